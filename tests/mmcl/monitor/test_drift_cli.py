"""`mmcl drift` end to end on real embeddings: verdict JSON, Evidently Report + workspace snapshot,
history PNG, model-change, text input through a model. The Report (t-SNE) runs once, on 2 x 150 rows."""

from __future__ import annotations

import json

import numpy as np

from mmcl.cli import main


def _drift(tmp_path, ref, cur, *extra):
    np.save(tmp_path / "ref.npy", ref)
    np.save(tmp_path / "cur.npy", cur)
    out = tmp_path / "out.json"
    code = main(
        [
            "drift",
            "--reference",
            str(tmp_path / "ref.npy"),
            "--current",
            str(tmp_path / "cur.npy"),
            "--output",
            str(out),
            "--permutations",
            "200",
            *extra,
        ]
    )
    return code, json.loads(out.read_text())


def test_workspace_report_history_and_plot(tmp_path, shifted_pair, null_pair):
    from evidently.ui.workspace import Workspace

    ws = tmp_path / "ws"
    code, res = _drift(
        tmp_path,
        *shifted_pair(150, 0.5, np.random.default_rng(0)),
        "--workspace",
        str(ws),
        "--seed",
        "1",
        "--name",
        "drop-1",
    )
    assert code == 0 and res["drift_detected"] is True
    for name in ("mmd", "classifier"):
        m = res["methods"][name]
        assert m["gated"] and m["drift_detected"] and m["p_value"] < 0.01
        assert (m["n_reference"], m["n_current"]) == (150, 150) and "settings" in m
    assert res["methods"]["centroid"]["p_value"] is None and res["settings"]["seed"] == 1
    # the Report shows the same classifier score as the direct call, and lands in the workspace
    assert np.isclose(res["report"]["evidently_score"], res["methods"]["classifier"]["score"])
    html = res["report"]["html"]
    assert "Drift in embeddings" in open(html, encoding="utf-8").read()
    projects = Workspace(str(ws)).list_projects()
    assert len(projects) == 1 and len(Workspace(str(ws)).list_runs(projects[0].id)) == 1

    code, res2 = _drift(
        tmp_path, *null_pair(150, np.random.default_rng(1)), "--workspace", str(ws), "--no-report"
    )
    assert code == 0 and "report" not in res2
    history = [json.loads(line) for line in (ws / "drift_history.jsonl").read_text().splitlines()]
    assert [h["name"] for h in history] == ["drop-1", None]
    png = (ws / "drift_history.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_fail_on_drift_exit_code(tmp_path, shifted_pair):
    ref, cur = shifted_pair(100, 0.5, np.random.default_rng(2))
    code, res = _drift(tmp_path, ref, cur, "--methods", "mmd", "--fail-on-drift")
    assert code == 1 and res["drift_detected"] and list(res["methods"]) == ["mmd"]


def test_text_files_embedded_by_a_model(tmp_path):
    from mmcl.monitor.sources import load_flickr_captions, load_mr_sentences

    captions = load_flickr_captions()[0]
    (tmp_path / "ref.txt").write_text("\n".join(captions[0:200:5]) + "\n", encoding="utf-8")
    (tmp_path / "cur.txt").write_text("\n".join(load_mr_sentences()[:40]) + "\n", encoding="utf-8")
    out = tmp_path / "out.json"
    code = main(
        [
            "drift",
            "--reference",
            str(tmp_path / "ref.txt"),
            "--current",
            str(tmp_path / "cur.txt"),
            "--model",
            "all-minilm-l6-v2",
            "--methods",
            "mmd",
            "centroid",
            "--output",
            str(out),
        ]
    )
    res = json.loads(out.read_text())
    assert code == 0 and res["drift_detected"] and res["reference"]["dim"] == 384


def test_model_change_command(tmp_path, text_sets):
    x = text_sets["captions"][:100]
    np.save(tmp_path / "old.npy", x)
    np.save(tmp_path / "new.npy", x + 0.02 * np.random.default_rng(0).normal(size=x.shape))
    out = tmp_path / "change.json"
    assert (
        main(
            [
                "drift",
                "model-change",
                "--old",
                str(tmp_path / "old.npy"),
                "--new",
                str(tmp_path / "new.npy"),
                "--output",
                str(out),
            ]
        )
        == 0
    )
    res = json.loads(out.read_text())
    assert 0.9 < res["linear_cka"] < 1.0 and res["n_probe"] == 100 and res["dim_new"] == 384


def test_group_files(tmp_path, grouped_captions):
    emb, ids = grouped_captions
    ref, cur = emb[:200], emb[200:]
    (tmp_path / "ref_ids.txt").write_text("\n".join(ids[:200]) + "\n", encoding="utf-8")
    np.save(tmp_path / "cur_ids.npy", ids[200:])
    code, res = _drift(
        tmp_path,
        ref,
        cur,
        "--methods",
        "mmd",
        "--reference-groups",
        str(tmp_path / "ref_ids.txt"),
        "--current-groups",
        str(tmp_path / "cur_ids.npy"),
    )
    assert code == 0 and res["grouped"]
    assert (res["reference"]["n"], res["reference"]["rows"]) == (40, 200)
    (tmp_path / "ref_ids.txt").write_text("\n".join(ids[:150]) + "\n", encoding="utf-8")
    np.save(tmp_path / "ref.npy", ref)
    argv = [
        "drift",
        "--reference",
        str(tmp_path / "ref.npy"),
        "--current",
        str(tmp_path / "cur.npy"),
        "--output",
        str(tmp_path / "bad.json"),
        "--reference-groups",
        str(tmp_path / "ref_ids.txt"),
        "--current-groups",
        str(tmp_path / "cur_ids.npy"),
    ]
    assert main(argv) == 2 and not (tmp_path / "bad.json").exists()

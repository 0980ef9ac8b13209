"""STS: numbers equal sentence-transformers' own encode + Spearman on the same pairs; aggregation; CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import spearmanr

from mmcl.eval.sts import SIMILARITY_DECIMALS, StsEvaluator, cosine_rows


def test_stsb_equals_sentence_transformers_evaluator(minilm, data_root):
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

    evaluator = StsEvaluator(("stsb",), data_root, max_pairs=200)
    ours = evaluator(minilm)
    (sub,) = evaluator.data["stsb"]
    assert len(sub) == 200
    ref = EmbeddingSimilarityEvaluator(
        sub.sentences1, sub.sentences2, sub.scores.tolist(), main_similarity="cosine"
    )
    theirs = ref(minilm.model)
    assert ours["stsb"] == pytest.approx(100 * theirs["spearman_cosine"], abs=0.01)
    assert ours["details"]["sets"]["stsb"]["all"]["pearson"] == pytest.approx(
        100 * theirs["pearson_cosine"], abs=0.01
    )


def test_sts12_subset_equals_sentence_transformers_encode(minilm, data_root):
    """SMTeuroparl holds identical-sentence pairs (cosine 1): the reference rounds like we do, see sts.py."""
    evaluator = StsEvaluator(("sts12",), data_root, max_pairs=150)
    evaluator.data["sts12"] = [s for s in evaluator.data["sts12"] if s.name == "SMTeuroparl"]
    ours = evaluator(minilm)
    (sub,) = evaluator.data["sts12"]
    a, b = (
        minilm.model.encode(sub.sentences1),
        minilm.model.encode(sub.sentences2),
    )  # as the ST evaluator does
    cos = np.round(
        (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1), SIMILARITY_DECIMALS
    )
    assert ours["sts12"] == pytest.approx(100 * spearmanr(sub.scores, cos)[0], abs=0.01)
    assert ours["details"]["sets"]["sts12"]["subsets"]["SMTeuroparl"]["n_pairs"] == 150


class HashEmbedder:
    """A deterministic bag-of-characters embedder: enough to check the bookkeeping exactly."""

    def encode(self, sentences):
        out = np.zeros((len(sentences), 26), dtype=np.float32)
        for i, s in enumerate(sentences):
            for ch in s:
                if "a" <= ch <= "z":
                    out[i, ord(ch) - 97] += 1
        return out + 0.01

    def describe(self):
        return {"kind": "hash"}


def test_aggregations_follow_senteval(tmp_path):
    base = tmp_path / "senteval/downstream/STS/STS13-en-test"
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    words = ["cat", "dog", "sun", "tree", "red", "blue", "map", "zip"]
    for name, n in (("one", 12), ("two", 7)):
        pairs = [" ".join(rng.choice(words, 3)) + "\t" + " ".join(rng.choice(words, 3)) for _ in range(n)]
        (base / f"STS.input.{name}.txt").write_text("\n".join(pairs) + "\n")
        (base / f"STS.gs.{name}.txt").write_text("\n".join(f"{x:.2f}" for x in rng.uniform(0, 5, n)) + "\n")
    result = StsEvaluator(("sts13",), tmp_path)(HashEmbedder())
    details = result["details"]["sets"]["sts13"]
    golds, preds, per = [], [], []
    for sub in StsEvaluator(("sts13",), tmp_path).data["sts13"]:
        emb = HashEmbedder()
        pred = cosine_rows(emb.encode(sub.sentences1), emb.encode(sub.sentences2))
        golds.append(sub.scores)
        preds.append(pred)
        per.append(100 * spearmanr(sub.scores, pred)[0])
    assert result["sts13"] == pytest.approx(100 * spearmanr(np.concatenate(golds), np.concatenate(preds))[0])
    assert details["mean"]["spearman"] == pytest.approx(np.mean(per))
    assert details["wmean"]["spearman"] == pytest.approx(np.average(per, weights=[12, 7]))
    assert result["avg"] == result["sts13"] and details["n_pairs"] == 19


def test_cli_writes_json_markdown_and_png(tmp_path, data_root):
    from mmcl.cli import main

    out = tmp_path / "reports" / "sts.json"
    rc = main(
        [
            "eval",
            "sts",
            "--model",
            "all-minilm-l6-v2",
            "--sets",
            "sts13",
            "stsb",
            "--max-pairs",
            "40",
            "--data-dir",
            str(data_root),
            "--output",
            str(out),
            "--quiet",
        ]
    )
    assert rc == 0
    result = json.loads(out.read_text())
    assert set(result) == {"sts13", "stsb", "avg", "details"}
    assert 50 < result["stsb"] <= 100 and result["details"]["sets"]["sts13"]["n_pairs"] == 120
    assert result["details"]["timing"]["n_unique_sentences"] <= 2 * 160
    md = out.with_suffix(".md").read_text()
    assert "| model | STS13 | STS-B | avg |" in md and f"{result['stsb']:.2f}" in md
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_missing_dataset_folder(tmp_path, capsys):
    from mmcl.cli import main

    rc = main(
        [
            "eval",
            "sts",
            "--model",
            "all-minilm-l6-v2",
            "--data-dir",
            str(tmp_path),
            "--output",
            str(tmp_path / "o.json"),
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert "senteval/downstream is missing from the data directory" in err and str(tmp_path) in err
    assert not (tmp_path / "o.json").exists()


def _sts16_release(data_root, root, sources: bool):
    """The real STS16 folder copied under `root`, with the two source columns of the SemEval release."""
    src = data_root / "senteval/downstream/STS/STS16-en-test"
    dst = root / "senteval/downstream/STS/STS16-en-test"
    dst.mkdir(parents=True)
    for path in src.glob("STS.*.txt"):
        text = path.read_text(encoding="utf-8")
        if sources and path.name.startswith("STS.input."):
            lines = text.rstrip("\n").split("\n")
            text = "".join(f"{line}\tsource-a-{i}\tsource-b-{i}\n" for i, line in enumerate(lines))
        (dst / path.name).write_text(text, encoding="utf-8")
    return dst


def test_sts16_semeval_release_with_source_columns_reads_the_pair(tmp_path, data_root):
    """Issue #12 class 10: four tab-separated columns (pair + two sources) read as SentEval/MTEB do."""
    plain = StsEvaluator(("sts16",), _sts16_release(data_root, tmp_path / "plain", False).parents[3])
    release = StsEvaluator(("sts16",), _sts16_release(data_root, tmp_path / "release", True).parents[3])
    assert [s.sentences1 for s in release.data["sts16"]] == [s.sentences1 for s in plain.data["sts16"]]
    assert [s.sentences2 for s in release.data["sts16"]] == [s.sentences2 for s in plain.data["sts16"]]
    assert not any("source-" in s for s in release.sentences())
    ours, theirs = release(HashEmbedder()), plain(HashEmbedder())
    assert ours["sts16"] == theirs["sts16"] and ours["details"]["sets"]["sts16"]["n_pairs"] == 1186


@pytest.mark.parametrize("extra, found", [("\tonly-one-source", 3), ("\ta\tb\tc", 5)])
def test_sts_input_with_three_or_five_columns_is_refused_naming_file_and_line(tmp_path, data_root, extra, found):
    from mmcl.errors import DataError

    folder = _sts16_release(data_root, tmp_path, True)
    path = folder / "STS.input.headlines.txt"
    lines = path.read_text(encoding="utf-8").split("\n")
    lines[6] = "\t".join(lines[6].split("\t")[:2]) + extra  # line 7
    path.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(DataError) as err:
        StsEvaluator(("sts16",), tmp_path)
    assert err.value.path == path and err.value.row == 7
    assert f"STS.input.headlines.txt, line 7: expected 2 tab-separated columns, found {found}" in str(err.value)

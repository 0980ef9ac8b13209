"""SentEval transfer: protocol pieces on synthetic data, and a quick real run through the CLI."""

from __future__ import annotations

import json

import numpy as np

from mmcl.eval.senteval import _select_and_fit, pair_features


def test_pair_features_layout():
    u, v = np.array([[1.0, -2.0]]), np.array([[3.0, 4.0]])
    np.testing.assert_array_equal(pair_features(u, v), [[1, -2, 3, 4, 2, 6, 3, -8]])


def test_selection_and_refit_on_separable_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5))
    y = (x[:, 0] + 0.1 * x[:, 1] > 0).astype(int)
    fit = _select_and_fit(
        x[:200], y[:200], x[200:300], y[200:300], x[:300], y[:300], x[300:], (0.25, 1.0, 4.0), 1000
    )
    assert fit.c in (0.25, 1.0, 4.0) and fit.val_acc >= 95.0
    assert (fit.test_pred == y[300:]).mean() >= 0.95


def test_cli_quick_run_is_well_above_chance(tmp_path, data_root):
    from mmcl.cli import main

    out = tmp_path / "transfer.json"
    rc = main(
        [
            "eval",
            "senteval",
            "--model",
            "all-minilm-l6-v2",
            "--tasks",
            "MR",
            "TREC",
            "MRPC",
            "--max-samples",
            "150",
            "--folds",
            "5",
            "--data-dir",
            str(data_root),
            "--output",
            str(out),
            "--quiet",
        ]
    )
    assert rc == 0
    result = json.loads(out.read_text())
    assert result["MR"] > 65.0  # two balanced classes: chance 50
    assert result["TREC"] > 45.0  # six classes: majority class ~23 %
    assert 0.0 < result["MRPC"] <= 100.0 and "f1" in result["details"]["tasks"]["MRPC"]
    assert (
        result["details"]["tasks"]["MR"]["folds"] == 5 and result["details"]["tasks"]["TREC"]["n_test"] == 150
    )
    assert "| model | MR | TREC | MRPC | avg |" in out.with_suffix(".md").read_text()
    assert out.with_suffix(".png").stat().st_size > 1000

"""The paired promotion gate (mmcl.promotion): observed figures equal the evaluators', equal models pass,
clearly worse ones are rejected, the false-rejection rate of equal models stays near 1 - confidence, and
items from different protocols are refused."""

import numpy as np
import pytest
from scipy.stats import spearmanr

from mmcl.errors import DataError
from mmcl.eval.retrieval import _similarity_and_positives, bidirectional_retrieval_metrics, query_ranks
from mmcl.promotion import compare_retrieval, compare_sts, load_items


def _retrieval_items(emb_text, emb_image, ids_text, ids_image):
    sim, pos = _similarity_and_positives(emb_text, emb_image, ids_text, ids_image)
    items = {}
    for name, s, p, q in (("text2image", sim, pos, ids_text), ("image2text", sim.T, pos.T, ids_image)):
        rows, first, _ = query_ranks(s, p)
        items[f"{name}/group"], items[f"{name}/rank"] = np.asarray(q)[rows].astype(str), first
    return items


def _model(rng, images, noise):
    """Caption and image embeddings of `images` groups (5 captions each) around shared centres."""
    centres = rng.normal(size=(len(images), 16))
    img = centres + noise * rng.normal(size=centres.shape)
    txt = np.repeat(centres, 5, axis=0) + noise * rng.normal(size=(5 * len(images), 16))
    return txt, img


def test_observed_rsum_is_the_evaluators_and_equal_models_pass():
    rng = np.random.default_rng(0)
    ids = np.array([f"im{i}" for i in range(40)])
    txt, img = _model(rng, ids, 1.0)
    items = _retrieval_items(txt, img, np.repeat(ids, 5), ids)
    decision = compare_retrieval(items, items)
    expected = bidirectional_retrieval_metrics(txt, img, np.repeat(ids, 5), ids)["rsum"]
    assert decision.champion == pytest.approx(expected) and decision.challenger == pytest.approx(expected)
    assert decision.delta == 0 and decision.low == 0 and decision.high == 0 and decision.passed
    assert decision.units == 40


def test_a_clearly_worse_retrieval_model_is_rejected_with_its_interval():
    rng = np.random.default_rng(1)
    ids = np.array([f"im{i}" for i in range(60)])
    good = _retrieval_items(*_model(rng, ids, 0.6), np.repeat(ids, 5), ids)
    rng = np.random.default_rng(1)  # the same centres, more noise: the same task done worse
    bad = _retrieval_items(*_model(rng, ids, 1.6), np.repeat(ids, 5), ids)
    decision = compare_retrieval(good, bad)
    assert decision.worse and decision.high < 0 and decision.low <= decision.delta <= decision.high
    assert "worse" in decision.reason() and "interval" in decision.reason()
    assert compare_retrieval(bad, good).passed  # the better one is not shown worse


def test_sts_observed_is_spearman_and_worse_is_rejected():
    rng = np.random.default_rng(2)
    gold = rng.integers(0, 6, size=500).astype(float)  # ties, as in real STS gold scores
    a = {"s/gold": gold, "s/pred": gold + rng.normal(0, 1.0, 500)}
    b = {"s/gold": gold, "s/pred": gold + rng.normal(0, 3.0, 500)}
    decision = compare_sts(a, b)
    assert decision.champion == pytest.approx(100 * spearmanr(gold, a["s/pred"]).statistic)
    assert decision.challenger == pytest.approx(100 * spearmanr(gold, b["s/pred"]).statistic)
    assert decision.worse and decision.high < 0


def test_equal_models_are_rejected_at_most_about_one_minus_confidence():
    """Two models of equal quality (independent noise on the same truth): the one-sided test at 95 % may
    reject ~5 % of them; over 60 pairs more than 12 rejections would mean a miscalibrated gate."""
    rejected = 0
    for seed in range(60):
        rng = np.random.default_rng(100 + seed)
        gold = rng.normal(size=300)
        a = {"s/gold": gold, "s/pred": gold + rng.normal(0, 1.0, 300)}
        b = {"s/gold": gold, "s/pred": gold + rng.normal(0, 1.0, 300)}
        rejected += compare_sts(a, b, resamples=300, seed=seed).worse
    assert rejected <= 12, rejected


def test_margin_accepts_a_small_loss_and_different_items_are_refused():
    rng = np.random.default_rng(3)
    gold = rng.normal(size=400)
    a = {"s/gold": gold, "s/pred": gold + rng.normal(0, 0.5, 400)}
    b = {"s/gold": gold, "s/pred": gold + rng.normal(0, 0.8, 400)}
    strict = compare_sts(a, b)
    assert strict.worse
    assert compare_sts(a, b, margin=-strict.low + 1).passed  # a margin beyond the interval accepts it
    other = {"s/gold": rng.normal(size=400), "s/pred": rng.normal(size=400)}
    with pytest.raises(DataError, match="different pairs"):
        compare_sts(a, other)
    with pytest.raises(ValueError, match="confidence"):
        compare_sts(a, b, confidence=1.5)


def test_unreadable_item_files_are_named(tmp_path):
    with pytest.raises(DataError, match="no per-item"):
        load_items(tmp_path / "missing.items.npz")
    bad = tmp_path / "bad.items.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="cannot read"):
        load_items(bad)


def test_registry_gate_is_paired_and_a_tolerance_keeps_the_other_gates(tmp_path):
    """`--tolerance sts_avg=1` sets one margin; the RSUM gate stays. Both decisions are the paired test."""
    from mmcl.registry_models import ModelRegistry

    rng = np.random.default_rng(4)
    ids = np.array([f"im{i}" for i in range(30)])
    gold = rng.normal(size=300)
    registry = ModelRegistry(tmp_path / "models")
    for name, noise in (("champ", 0.5), ("chall", 0.5)):
        run = tmp_path / "runs" / name
        run.mkdir(parents=True)
        (run / "model.pt").write_bytes(b"weights")
        registry.register(name, run)
        items = _retrieval_items(*_model(np.random.default_rng(5), ids, noise), np.repeat(ids, 5), ids)
        sts = {"s/gold": gold, "s/pred": gold + rng.normal(0, noise, 300)}
        for kind, arrays in (("retrieval", items), ("sts", sts)):  # as `mmcl eval` leaves them: json + items
            (tmp_path / "evals" / name).mkdir(parents=True, exist_ok=True)
            (tmp_path / "evals" / name / f"{kind}.json").write_text("{}")
            np.savez(tmp_path / "evals" / name / f"{kind}.items.npz", **arrays)
        registry.record_metric(name, "retrieval_rsum", 100.0, "p", str(tmp_path / "evals" / name / "retrieval.json"))
        registry.record_metric(name, "sts_avg", 50.0, "p", str(tmp_path / "evals" / name / "sts.json"))
    registry.promote("champ")
    gate = registry.gate("chall", {"sts_avg": 1.0})
    assert {c.metric: c.tolerance for c in gate.comparisons} == {"sts_avg": 1.0, "retrieval_rsum": 0.0}
    assert all(c.paired is not None and c.paired["confidence"] == pytest.approx(0.975) for c in gate.comparisons)
    assert gate.passed  # the same retrieval results, an equally noisy STS model

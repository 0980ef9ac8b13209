"""detect_drift: several rows per item break the tests' independence; grouping restores calibration."""

from __future__ import annotations

import numpy as np
import pytest

from mmcl.errors import DataError, UserError
from mmcl.monitor.detector import DriftSettings, detect_drift
from mmcl.monitor.mmd import MmdSettings

FAST = DriftSettings(mmd=MmdSettings(n_permutations=200))


def _image_split(emb, ids, rng):
    images = rng.permutation(np.unique(ids))
    ref, cur = np.isin(ids, images[:40]), np.isin(ids, images[40:])
    return emb[ref], ids[ref], emb[cur], ids[cur]


def test_grouping_captions_by_image_restores_calibration(grouped_captions):
    """20 same-distribution splits of 80 images (40 per side, 5 captions each), no drift anywhere:
    row-level MMD flags most of them (captions of one image are alike); per-image MMD stays near alpha."""
    emb, ids = grouped_captions
    rng = np.random.default_rng(0)
    raw, grouped = 0, 0
    for i in range(20):
        ref, ref_ids, cur, cur_ids = _image_split(emb, ids, rng)
        settings = DriftSettings(seed=i, mmd=FAST.mmd)
        raw += detect_drift(ref, cur, methods=("mmd",), settings=settings)["drift_detected"]
        res = detect_drift(
            ref, cur, methods=("mmd",), settings=settings, reference_groups=ref_ids, current_groups=cur_ids
        )
        grouped += res["drift_detected"]
    assert res["grouped"] and (res["reference"]["n"], res["reference"]["rows"]) == (40, 200)
    assert raw >= 10, raw
    assert grouped <= 3, grouped


def test_group_ids_must_match_rows(grouped_captions):
    emb, ids = grouped_captions
    with pytest.raises(UserError, match="199 group ids for 200 embedding rows"):
        detect_drift(emb[:200], emb[200:], reference_groups=ids[:199], current_groups=ids[200:])
    with pytest.raises(UserError, match="both sets"):
        detect_drift(emb[:200], emb[200:], reference_groups=ids[:200])
    with pytest.raises(DataError, match="only 4 groups"):
        detect_drift(emb[:20], emb[200:], reference_groups=ids[:20], current_groups=ids[200:])


def test_unknown_method():
    with pytest.raises(UserError, match="unknown drift method"):
        detect_drift(np.eye(30), np.eye(30), methods=("ks",))

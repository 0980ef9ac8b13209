from __future__ import annotations

import numpy as np

from mmcl.monitor.centroid import centroid_cosine_distance


def test_centroid_distance_grows_with_the_share_of_movie_reviews(shifted_pair):
    rng = np.random.default_rng(0)
    scores = [centroid_cosine_distance(*shifted_pair(150, f, rng))["score"] for f in (0.0, 0.25, 0.5)]
    assert scores[0] < scores[1] < scores[2]
    res = centroid_cosine_distance(*shifted_pair(150, 0.5, rng))
    assert res["p_value"] is None and res["drift_detected"] is None  # descriptive, never gates

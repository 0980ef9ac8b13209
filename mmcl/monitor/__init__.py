"""Embedding drift monitoring (issue #6).

- detector.py: `detect_drift(reference, current)` runs the methods and returns one JSON-able verdict.
- mmd.py: own MMD two-sample test, Gaussian kernel, median bandwidth, pooled permutations (gated).
- evidently_drift.py: Evidently 0.7 EmbeddingsDrift classifier method + Mann-Whitney p-value (gated),
  the Evidently Report and the local Evidently workspace.
- centroid.py: centroid cosine distance (descriptive). model_change.py: old vs new model (CKA, Procrustes).
- validate_inputs.py: refuses inputs that would give a meaningless score. plots.py: history/power PNGs.
- alignment.py: alignment drift (issue #17): paired cross-modal similarities of a drop vs a reference,
  grouped permutation test, suspects. `mmcl drift alignment`.
- sources.py: real text/image embedding sets for the tests and bench. cli.py: `mmcl drift`.
"""

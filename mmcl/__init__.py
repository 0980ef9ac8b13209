"""mmcl: one embedding space for several modalities, trained contrastively.

The ML library. It never imports dagster: every pipeline step is a function or a `mmcl` CLI command
first, and `orchestration/` only schedules and records it.
"""

__version__ = "0.1.0"

"""The whole retrain cycle as one job (what `make demo` materialises)."""


import dagster as dg

full_cycle_job = dg.define_asset_job(
    "full_cycle_job", selection=dg.AssetSelection.all(),
    description="Landing zone to drift report in one run: ingest, GX gate, DVC version, teacher, training (Pipes), "
                "evaluations, promotion gate, reference embeddings, drift.",
    tags={"mmcl/training": "true"},
)

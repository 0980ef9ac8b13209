"""Drop validation with Great Expectations 1.x: suites in code, quarantine, reports.

    columns.py     the table GX judges (manifest fields + computed columns) and the Reference
    media.py       does an image / audio decode (full, header or exists mode)
    suites.py      the checks: name, field, severity (blocking / warning), expectation
    runner.py      ephemeral GX context, validate_drop() -> Validation(report, rows, accepted)
    report.py      DropReport / Failure and the JSON report writer
    quarantine.py  accepted rows, quarantined rows (with reasons and media), rejected drops
    gate.py        run_gate(): validate a landing zone drop by drop and route the rows
    cli.py         `mmcl validate DROP_DIR ... --output report.json`

Nothing here imports great_expectations at module import: GX (~2.5 s) loads on the first validation.
"""

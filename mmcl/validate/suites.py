"""The expectation suites, defined in code (no GX YAML directory): one `Check` per property.

Two suites run on every drop:
  drop_schema   table-level, on the manifest's own columns. A failure means the drop cannot be read as
                records at all: the whole drop is rejected.
  drop_records  row-level, on the computed table (mmcl.validate.columns). A failing *blocking* check
                quarantines the failing rows; a failing *warning* check is reported and the rows are kept.

Severity maps onto GX's own field: blocking = FailureSeverity.CRITICAL, warning = WARNING. Check names
are stable: they are the Dagster asset-check names and the `check` of every failure in the report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from mmcl.data.manifest import ID_PATTERN, REQUIRED_FIELDS, SPLITS

BLOCKING, WARNING = "blocking", "warning"
GX_SEVERITY = {BLOCKING: "critical", WARNING: "warning"}
MAX_CAPTION_CHARS = 400  # Flickr captions stay under ~200 characters; MR sentences under ~300


@dataclass(frozen=True)
class Check:
    """One expectation with its severity, the manifest field it is about and how to word a failure."""

    name: str
    field: str | None                 # None: the reason names the field (parse errors, unknown fields)
    severity: str
    description: str
    build: Callable[[Any], Any]       # gxe module -> Expectation
    reason: Callable[[dict[str, Any]], str] | str  # row -> reason, or the computed column holding it
    field_column: str | None = None   # computed column naming the field per row (overrides `field`)


def _null(column: str) -> Callable[[Any], Any]:
    return lambda gxe: gxe.ExpectColumnValuesToBeNull(column=column)


def schema_checks() -> list[Check]:
    checks = [
        Check(f"column_{name}_exists", name, BLOCKING, f"the manifest has a {name!r} column",
              lambda gxe, n=name: gxe.ExpectColumnToExist(column=n),
              lambda _r, n=name: f"required column {n!r} is missing from the manifest")
        for name in REQUIRED_FIELDS
    ]
    checks.append(Check("manifest_has_records", "record", BLOCKING, "the manifest holds at least one record",
                        lambda gxe: gxe.ExpectTableRowCountToBeBetween(min_value=1),
                        lambda _r: "the manifest holds no record"))
    return checks


def record_checks(max_caption_chars: int = MAX_CAPTION_CHARS) -> list[Check]:
    media = []
    for m in ("image", "audio"):
        media += [
            Check(f"{m}_path_inside_drop", m, BLOCKING, f"the {m} path is relative and stays inside the drop",
                  _null(f"{m}_path_error"), f"{m}_path_error"),
            Check(f"{m}_decodes", m, BLOCKING, f"the {m} file exists and decodes", _null(f"{m}_error"), f"{m}_error"),
            Check(f"{m}_hash_matches", f"{m}_sha256", BLOCKING, f"the {m} file has the sha256 the manifest declares",
                  _null(f"{m}_hash_error"), f"{m}_hash_error"),
        ]
    return [
        Check("record_parses", None, BLOCKING, "the record parses: valid JSON/CSV, UTF-8 text, typed fields",
              _null("parse_error"), "parse_error"),
        Check("id_not_null", "id", BLOCKING, "every record has an id",
              lambda gxe: gxe.ExpectColumnValuesToNotBeNull(column="id"), lambda _r: "id is missing"),
        Check("id_format", "id", BLOCKING, f"ids match {ID_PATTERN} (they become shard keys and file names)",
              lambda gxe: gxe.ExpectColumnValuesToMatchRegex(column="id", regex=ID_PATTERN),
              lambda r: f"id {r['id']!r} does not match {ID_PATTERN}"),
        Check("id_unique", "id", BLOCKING, "ids are unique within the drop",
              lambda gxe: gxe.ExpectColumnValuesToBeUnique(column="id"),
              lambda r: f"duplicate id {r['id']!r}: more than one record of the drop has it"),
        Check("id_not_versioned", "id", BLOCKING, "no id repeats one already versioned", _null("id_conflict"),
              "id_conflict"),
        Check("split_not_null", "split", BLOCKING, "every record has a split",
              lambda gxe: gxe.ExpectColumnValuesToNotBeNull(column="split"), lambda _r: "split is missing"),
        Check("split_valid", "split", BLOCKING, f"split is one of {list(SPLITS)}",
              lambda gxe: gxe.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS)),
              lambda r: f"split {r['split']!r} is not one of {list(SPLITS)}"),
        Check("has_a_modality", "record", BLOCKING, "a record has at least one of caption, image, audio",
              lambda gxe: gxe.ExpectColumnValuesToBeBetween(column="n_modalities", min_value=1),
              lambda _r: "no caption, image or audio"),
        Check("caption_not_empty", "caption", BLOCKING, "a caption, when given, is not empty or blank",
              lambda gxe: gxe.ExpectColumnValueLengthsToBeBetween(column="caption_clean", min_value=1),
              lambda _r: "caption is empty"),
        Check("captions_not_empty", "captions", BLOCKING, "no caption in the captions list is empty",
              _null("captions_error"), "captions_error"),
        *media,
        Check("no_train_eval_leak", None, BLOCKING, "no content hash is shared between train and dev/test",
              _null("leak_error"), "leak_error", field_column="leak_field"),
        Check("caption_length", "caption", WARNING, f"captions are at most {max_caption_chars} characters",
              lambda gxe: gxe.ExpectColumnValueLengthsToBeBetween(column="caption_clean", max_value=max_caption_chars),
              lambda r: f"caption is {len(r['caption_clean'])} characters (> {max_caption_chars})"),
        Check("caption_not_near_duplicate", "caption", WARNING, "no caption repeats another after normalisation",
              _null("caption_duplicate_of"), "caption_duplicate_of"),
        Check("known_fields_only", None, WARNING, "every field of a record is a known manifest field",
              _null("field_warning"), "field_warning"),
    ]


def with_severities(checks: list[Check], overrides: dict[str, str] | None) -> list[Check]:
    """Checks with some severities raised, e.g. {"caption_not_near_duplicate": "blocking"}. A blocking
    check stays blocking: each one keeps unreadable, unsafe (paths, ids) or unvetted rows out of the
    dataset, so lowering one is refused rather than configured."""
    from mmcl.errors import UserError

    overrides = dict(overrides or {})
    by_name = {c.name: c for c in checks}
    for name, severity in overrides.items():
        if name not in by_name:
            raise UserError(f"unknown check {name!r} in a severity override; checks: {sorted(by_name)}")
        if severity not in GX_SEVERITY:
            raise UserError(f"severity of {name!r} must be one of {sorted(GX_SEVERITY)}, got {severity!r}")
        if by_name[name].severity == BLOCKING and severity != BLOCKING:
            raise UserError(f"check {name!r} is blocking and cannot be made a {severity}: blocking checks keep "
                            "unsafe or unreadable rows out of the dataset (only warnings can change, to blocking)")
    return [replace(c, severity=overrides.get(c.name, c.severity)) for c in checks]


def build_suite(gx: Any, name: str, checks: list[Check]) -> Any:
    """A GX ExpectationSuite whose expectations carry their check name, field and severity in meta."""
    import great_expectations.expectations as gxe

    suite = gx.ExpectationSuite(name=name)
    for check in checks:
        expectation = check.build(gxe)
        expectation.severity = GX_SEVERITY[check.severity]
        expectation.meta = {"check": check.name, "field": check.field, "severity": check.severity}
        expectation.description = check.description
        suite.add_expectation(expectation)
    return suite

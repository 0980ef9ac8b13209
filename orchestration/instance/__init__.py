"""The Dagster instance: a DAGSTER_HOME holding orchestration/instance/dagster.yaml (SQLite storage, the
embedded default) or, with `postgres=True`, the same settings with storage on PostgreSQL (connection from
MMCL_PG_HOST, MMCL_PG_PORT, MMCL_PG_USER, MMCL_PG_PASSWORD, MMCL_PG_DB; needs the dagster-postgres package).

    python -m orchestration.instance [DAGSTER_HOME] [--postgres]   create it (default $DAGSTER_HOME or ./.dagster_home)
"""

import os
import shutil
from pathlib import Path

from orchestration.resources import REPO_ROOT

INSTANCE_YAML = Path(__file__).with_name("dagster.yaml")
POSTGRES_STORAGE = """\
# Runs, event logs and schedules on PostgreSQL (dagster-postgres); the rest as in the SQLite default.
storage:
  postgres:
    postgres_db:
      hostname: {env: MMCL_PG_HOST}
      port: {env: MMCL_PG_PORT}
      username: {env: MMCL_PG_USER}
      password: {env: MMCL_PG_PASSWORD}
      db_name: {env: MMCL_PG_DB}
      scheme: postgresql+psycopg2   # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which is not installed

"""
DEFAULT_HOME = REPO_ROOT / ".dagster_home"
TRAINING_POOL = "mmcl_training"


def ensure_dagster_home(home: str | os.PathLike | None = None, *, postgres: bool = False) -> Path:
    """Create DAGSTER_HOME with the instance yaml (an existing dagster.yaml is kept: it may be edited)."""
    path = Path(home or os.environ.get("DAGSTER_HOME") or DEFAULT_HOME).resolve()
    path.mkdir(parents=True, exist_ok=True)
    target = path / "dagster.yaml"
    if not target.is_file():
        shutil.copy2(INSTANCE_YAML, target)
        if postgres:
            target.write_text(POSTGRES_STORAGE + INSTANCE_YAML.read_text())
    return path


def open_instance(home: str | os.PathLike | None = None, *, postgres: bool = False):
    """A DagsterInstance on that home, with the training pool limited to one slot."""
    import dagster as dg

    path = ensure_dagster_home(home, postgres=postgres)
    instance = dg.DagsterInstance.from_config(str(path))
    instance.event_log_storage.set_concurrency_slots(TRAINING_POOL, 1)
    return instance


def main(argv: list[str]) -> None:
    """`python -m orchestration.instance [DAGSTER_HOME] [--postgres]`: create it, print its path."""
    args = [a for a in argv if a != "--postgres"]
    print(ensure_dagster_home(args[0] if args else None, postgres="--postgres" in argv))

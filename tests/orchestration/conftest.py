"""Fixtures for the orchestration tests: a tmp workspace, a tmp DAGSTER_HOME (the project's instance yaml)
and the definitions bound to them with the `tiny` profile. Real Dagster, GX, DVC, Evidently, mmcl.

Storage: SQLite, except for the retrain-cycle module, which runs on a real PostgreSQL server started on
127.0.0.1 when the `postgresql` system package and `dagster-postgres` are installed (required in CI).
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
PER_DROP = 24  # records per simulated drop: a few seconds of validation, enough rows for a drift test
PG_BINS = sorted(Path("/usr/lib/postgresql").glob("*/bin"))


def land_clean_drops(workspace: Path, first: int, last: int) -> list[str]:
    """Write clean drops first..last (1-based, PER_DROP records each) into the workspace's landing zone."""
    from mmcl.data.drops import simulate_drops

    written = simulate_drops(workspace / "landing", n_drops=last, per_drop=PER_DROP, start=first)
    return [p.name for p in written]


def postgres_missing() -> str | None:
    """Why a PostgreSQL-backed instance cannot run here, or None."""
    if not PG_BINS:
        return "the postgresql system package (apt-get install postgresql) is not installed"
    try:
        import dagster_postgres  # noqa: F401
    except ImportError:
        return "the dagster-postgres Python package is not installed"
    return None


def _as_postgres_user(cmd: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the Debian package's `postgres` user then."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextlib.contextmanager
def postgres_server():
    """A throw-away cluster on 127.0.0.1 (trust auth, own process group); yields the MMCL_PG_* variables."""
    root = Path(tempfile.mkdtemp(prefix="mmcl_pg_"))  # not under pytest's 0700 tree: the postgres user enters it
    data, sockets = root / "data", root / "sock"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bin_dir = PG_BINS[-1]
    subprocess.run(_as_postgres_user([str(bin_dir / "initdb"), "-D", str(data), "-U", "mmcl", "--auth=trust",
                                      "-E", "UTF8"]), check=True, capture_output=True)
    server = subprocess.Popen(_as_postgres_user([str(bin_dir / "postgres"), "-D", str(data), "-h", "127.0.0.1",
                                                 "-p", str(port), "-k", str(sockets)]),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(150):
            if subprocess.run([str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                              capture_output=True).returncode == 0:
                break
            time.sleep(0.2)
        else:
            raise RuntimeError("PostgreSQL did not start on 127.0.0.1")
        yield {"MMCL_PG_HOST": "127.0.0.1", "MMCL_PG_PORT": str(port), "MMCL_PG_USER": "mmcl",
               "MMCL_PG_PASSWORD": "unused-trust-auth", "MMCL_PG_DB": "postgres"}
    finally:
        os.killpg(server.pid, signal.SIGINT)  # SIGINT: PostgreSQL's fast shutdown
        server.wait(timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("workspace")


@pytest.fixture(scope="module")
def dagster_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("dagster_home")


@pytest.fixture(scope="module")
def instance(dagster_home):
    from orchestration.instance import open_instance

    instance = open_instance(dagster_home)
    yield instance
    instance.dispose()


@pytest.fixture(scope="module")
def defs(workspace):
    from orchestration.definitions import build_defs

    return build_defs(workspace=str(workspace), profile="tiny")

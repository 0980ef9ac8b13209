"""Fixtures for the deploy tests: a throw-away PostgreSQL server on 127.0.0.1 (the helper of
tests/orchestration/conftest.py, loaded by path: with --import-mode=importlib test folders are not packages)."""

import importlib.util
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def _orchestration_test_helpers():
    spec = importlib.util.spec_from_file_location("mmcl_orchestration_test_helpers",
                                                  REPO / "tests" / "orchestration" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def pg_env():
    """MMCL_PG_* of a PostgreSQL server started for this session (skipped on a workstation without
    PostgreSQL; a failure in CI, where .ci/run installs it, so a skip never hides the feature there)."""
    helpers = _orchestration_test_helpers()
    missing = helpers.postgres_missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide PostgreSQL for the deploy tests: {missing}")
        pytest.skip(missing)
    with helpers.postgres_server() as env:
        yield env

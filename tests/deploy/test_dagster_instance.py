"""deploy/dagster.yaml loaded by a real Dagster instance against a real PostgreSQL server on loopback:
storage, run queue, GPU pool, run monitoring and retries as configured, and a run recorded in PostgreSQL
that a second instance (another process's view) reads back."""

import shutil
from pathlib import Path

import dagster as dg
import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


@pytest.fixture
def deploy_instance(pg_env, tmp_path, monkeypatch):
    """An instance from deploy/dagster.yaml (copied into a tmp DAGSTER_HOME, so local compute logs land there)."""
    for key, value in pg_env.items():
        monkeypatch.setenv(key, value)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    instance = dg.DagsterInstance.from_config(str(home))
    yield instance, home
    instance.dispose()


def test_storage_is_postgres(deploy_instance):
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    instance, _ = deploy_instance
    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.schedule_storage, PostgresScheduleStorage)


def test_run_queue_gpu_pool_monitoring_and_retries(deploy_instance):
    from dagster._core.run_coordinator import QueuedRunCoordinator

    instance, _ = deploy_instance
    assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
    assert type(instance.run_launcher).__name__ == "DefaultRunLauncher"
    config = instance.get_concurrency_config()
    queue = config.run_queue_config
    assert queue.max_concurrent_runs == 4
    assert {"key": "mmcl/training", "value": "true", "limit": 1} in [dict(t) for t in queue.tag_concurrency_limits]
    assert config.pool_config.default_pool_limit == 1  # the GPU pool mmcl_training: one training at a time
    assert instance.run_monitoring_enabled and instance.run_monitoring_start_timeout_seconds == 600
    assert instance.run_monitoring_max_runtime_seconds == 86400
    assert instance.run_retries_enabled and instance.run_retries_max_retries == 1
    # pool slots live in PostgreSQL (the daemon and every run worker see the same counts)
    instance.event_log_storage.set_concurrency_slots("mmcl_training", 1)
    assert "mmcl_training" in instance.event_log_storage.get_concurrency_keys()


def test_a_run_is_recorded_in_postgres(deploy_instance):
    instance, home = deploy_instance

    @dg.asset(pool="mmcl_training")
    def deploy_probe() -> int:
        return 1

    result = dg.materialize([deploy_probe], instance=instance)
    assert result.success
    other = dg.DagsterInstance.from_config(str(home))  # a second connection, as the webserver would open
    try:
        assert other.get_run_by_id(result.run_id).is_success
        event = other.get_latest_materialization_event(dg.AssetKey("deploy_probe"))
        assert event is not None and event.run_id == result.run_id
    finally:
        other.dispose()

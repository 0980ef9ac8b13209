"""The retrain -> revalidate loop on the tiny profile, in-process: the whole graph, a worse challenger that is
not promoted, a new drop that triggers ingestion, and a failing drift check that triggers retraining. Tests
run in file order and share one workspace and one Dagster instance, whose storage is a real PostgreSQL server
started on 127.0.0.1 (SQLite where PostgreSQL is not installed; CI=1 requires PostgreSQL)."""

import json
import os

import dagster as dg
import pytest

from tests.orchestration.conftest import land_clean_drops, postgres_missing, postgres_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pg_env():
    """The MMCL_PG_* variables of a running server, or None (SQLite) where PostgreSQL is missing."""
    reason = postgres_missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide PostgreSQL for the orchestration tests: {reason}")
        yield None
        return
    with postgres_server() as env:
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)  # the instance yaml reads the connection from the environment
        yield env
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def instance(dagster_home, pg_env):
    from orchestration.instance import open_instance

    instance = open_instance(dagster_home, postgres=pg_env is not None)
    yield instance
    instance.dispose()


def _check(result: dg.ExecuteInProcessResult, name: str):
    found = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    assert len(found) == 1, f"check {name} evaluated {len(found)} times"
    return found[0]


@pytest.fixture(scope="module")
def cycle(defs, instance, workspace):
    land_clean_drops(workspace, 1, 2)
    result = defs.resolve_job_def("full_cycle_job").execute_in_process(instance=instance, raise_on_error=False)
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    return result


def test_whole_graph_materialises(cycle, workspace):
    from mmcl.data.versioning import read_dvc_md5
    from mmcl.registry_models import ModelRegistry

    assets = {k.to_user_string() for k in cycle.get_asset_materialization_events_by_key() or []} \
        if hasattr(cycle, "get_asset_materialization_events_by_key") else \
        {e.asset_key.to_user_string() for e in cycle.get_asset_materialization_events()}
    assert assets >= {"raw_drop", "validated_drop", "dataset_version", "teacher_scores", "trained_model", "sts_eval",
                      "senteval_eval", "retrieval_eval", "promoted_model", "reference_embeddings", "embedding_drift"}
    failed = [(e.asset_key.to_user_string(), e.check_name) for e in cycle.get_asset_check_evaluations() if not e.passed]
    assert failed == []
    # DataVersion of the dataset is its DVC md5
    version = next(e for e in cycle.get_asset_materialization_events() if e.asset_key.path == ["dataset_version"])
    md5 = read_dvc_md5(workspace / "dataset.dvc")
    assert version.materialization.tags["dagster/data_version"] == md5
    # the trained model is the champion, with real figures and a card naming its data
    champion = ModelRegistry(workspace / "models").champion()
    assert champion is not None and champion["dataset_md5"] == md5
    assert 0 < champion["metrics"]["sts_avg"]["value"] <= 100
    assert champion["metrics"]["retrieval_rsum"]["value"] > 0
    card = (workspace / "models" / champion["id"] / "MODEL_CARD.md").read_text()
    assert md5 in card and "drop-0001" in card and "| sts |" in card


def test_runs_are_stored_in_postgres(cycle, instance, pg_env):
    if pg_env is None:
        pytest.skip(f"SQLite storage here: {postgres_missing()}")
    import psycopg2

    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    with psycopg2.connect(host=pg_env["MMCL_PG_HOST"], port=pg_env["MMCL_PG_PORT"], user=pg_env["MMCL_PG_USER"],
                          dbname=pg_env["MMCL_PG_DB"]) as conn, conn.cursor() as cur:
        cur.execute("select status from runs where run_id = %s", (cycle.run_id,))
        assert cur.fetchone()[0] == "SUCCESS"
        cur.execute("select count(*) from event_logs where run_id = %s and dagster_event_type = %s",
                    (cycle.run_id, "ASSET_MATERIALIZATION"))
        assert cur.fetchone()[0] == len(cycle.get_asset_materialization_events())
        cur.execute("select count(*) from event_logs where run_id = %s and dagster_event_type = %s",
                    (cycle.run_id, "ASSET_CHECK_EVALUATION"))
        assert cur.fetchone()[0] == len(cycle.get_asset_check_evaluations())


def test_lineage_model_command(cycle, workspace, capsys):
    from mmcl.cli import main
    from mmcl.registry_models import ModelRegistry

    champion = ModelRegistry(workspace / "models").champion()
    assert main(["lineage", "model", champion["id"], "--store", str(workspace / "lineage")]) == 0
    out = capsys.readouterr().out
    assert champion["dataset_md5"] in out and "eval sts" in out and "code: git" in out


def test_demo_report_prints_retrieval_before_after_and_chance(cycle, defs, capsys, monkeypatch):
    from orchestration.demo import report

    monkeypatch.setenv("DAGSTER_HOME", "unused-by-the-report")
    report(defs.resources["workspace"])
    out = capsys.readouterr().out
    assert "Held-out retrieval" in out and "R@5 chance" in out
    row = next(line for line in out.splitlines() if line.startswith("| text->image |"))
    cells = [float(c) for c in row.strip("|").split("|")[1:]]
    assert len(cells) == 7 and all(0 <= c <= 100 for c in cells)  # before R@1/5/10, after R@1/5/10, chance
    assert "model card" in out and "lineage" in out


@pytest.fixture(scope="module")
def rejected(cycle, defs, instance, workspace):
    """A retrain of a deliberately worse model after the cycle: (its run result, the champion before it)."""
    from mmcl.registry_models import ModelRegistry

    before = ModelRegistry(workspace / "models").champion()
    # the text tower at lr 1e-3 (10x the config's) loses much of its sentence tuning in 3 steps: a worse model
    config = {"ops": {"trained_model": {"config": {"text_lr": 0.001}}}}
    result = defs.resolve_job_def("retrain_job").execute_in_process(run_config=config, instance=instance,
                                                                raise_on_error=False)
    return result, before


def test_worse_challenger_is_rejected_cleanly(rejected, instance, workspace):
    """A worse challenger is an outcome, not a crash: the run succeeds, the paired gate shows the interval, the
    registry records the refusal, the champion's value and assets stay as they were."""
    from mmcl.registry_models import ModelRegistry

    registry = ModelRegistry(workspace / "models")
    result, before = rejected
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    gates = [_check(result, "sts_not_worse_than_champion"), _check(result, "rsum_not_worse_than_champion")]
    assert all(g.severity == dg.AssetCheckSeverity.WARN for g in gates)  # informative: promoted_model decides
    assert not all(g.passed for g in gates), [g.description for g in gates]
    failed = next(g for g in gates if not g.passed)
    assert "interval" in failed.description and "worse" in failed.description
    assert failed.metadata["interval_high"].value < 0  # the upper bound of challenger - champion is below 0
    materialised = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "trained_model" in materialised and "promoted_model" not in materialised
    assert "reference_embeddings" not in materialised
    observed = [e for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"
                and e.asset_key.to_user_string() == "promoted_model"]
    assert observed and observed[0].event_specific_data.asset_observation.metadata["decision"].value == "rejected"
    assert instance.get_run_by_id(result.run_id).tags["mmcl/promotion"] == "rejected"
    assert registry.champion()["id"] == before["id"]
    challenger = next(e for e in registry.list() if e["id"] != before["id"])
    events = [e for e in registry.read()["events"] if e["model"] == challenger["id"]]
    assert events[-1]["action"] in ("refused", "reject", "rejected")


def test_new_drop_triggers_the_sensor(defs, instance, workspace):
    """Alone or after the cycle: drops the workspace already ingested are never requested again, a new one once."""
    sensor = defs.get_sensor_def("new_drop_sensor")
    context = dg.build_sensor_context(instance=instance, resources={"workspace": defs.resources["workspace"]})
    first = sensor(context)  # whatever is landed and not ingested yet (nothing, after the cycle) is new once
    ingested = {p.name for p in (workspace / "raw").iterdir()} if (workspace / "raw").is_dir() else set()
    if isinstance(first, dg.RunRequest):
        assert not set(first.run_key.removeprefix("drops:").split(",")) & ingested
    assert isinstance(sensor(context), dg.SkipReason)  # nothing new since: no second run
    land_clean_drops(workspace, 7, 7)
    request = sensor(context)
    assert isinstance(request, dg.RunRequest) and request.run_key == "drops:drop-0007"
    assert sensor.job_name == "ingest_job"
    assert "drop-0007" in json.loads(context.cursor)
    fresh = dg.build_sensor_context(instance=instance, resources={"workspace": defs.resources["workspace"]})
    again = sensor(fresh)  # an empty cursor (a first UI start) does not re-request what raw/ already holds
    assert isinstance(again, dg.SkipReason) or not set(again.run_key.removeprefix("drops:").split(",")) & ingested


def test_failing_drift_check_triggers_retraining(cycle, defs, instance, workspace):  # cycle: a champion
    from mmcl.data.drops import simulate_shifted_drop

    drift_sensor = defs.get_sensor_def("drift_retrain_sensor")
    context = dg.build_sensor_context(instance=instance)
    assert isinstance(drift_sensor(context), dg.SkipReason)  # the last drift check passed
    # a topic shift: only photos of dogs, each with its own captions; the data the champion sees has moved while
    # the pairs stay aligned (so the alignment gate does not block the retrain the drift starts)
    simulate_shifted_drop(workspace / "landing", "shift-0001", records=40, caption_fraction=0.0, corruption=None,
                          topic="dog")
    result = defs.resolve_job_def("ingest_job").execute_in_process(instance=instance, raise_on_error=False)
    assert result.success
    drift = _check(result, "no_embedding_drift")
    assert not drift.passed, drift.metadata
    request = drift_sensor(context)
    assert isinstance(request, dg.RunRequest) and request.tags["mmcl/trigger"] == "drift"
    assert drift_sensor.job_name == "retrain_job"
    assert isinstance(drift_sensor(context), dg.SkipReason)  # one retrain per failed check


def test_a_config_error_fails_at_once_with_mmcls_message(cycle, defs, instance):
    """A permanent error is not retried: one attempt, and the run's failure says what is wrong."""
    config = {"ops": {"trained_model": {"config": {"overrides": ["train.no_such_key=1"]}}}}
    result = defs.resolve_job_def("retrain_job").execute_in_process(run_config=config, instance=instance,
                                                                raise_on_error=False)
    assert not result.success
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert len(failures) == 1 and failures[0].step_key == "trained_model"
    message = failures[0].event_specific_data.error.message
    assert "the training config is invalid" in message and "no_such_key" in message
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]


def test_champion_job_forces_and_rolls_back_with_who_and_why(rejected, defs, instance, workspace):
    """A person overrides the gate from the Launchpad (champion_job): the forced model becomes champion, the
    registry and the model's lineage say who and why; a rollback restores the previous champion."""
    from mmcl.model_card import read_model_lineage
    from mmcl.registry_models import ModelRegistry

    registry = ModelRegistry(workspace / "models")
    _, before = rejected
    challenger = next(e["id"] for e in registry.list() if e["id"] != before["id"])
    job = defs.resolve_job_def("champion_job")
    anonymous = {"ops": {"promoted_model": {"config": {"action": "force", "model_id": challenger}}}}
    refused = job.execute_in_process(run_config=anonymous, instance=instance, raise_on_error=False)
    assert not refused.success and registry.champion()["id"] == before["id"]  # who and why are required
    forced = {"ops": {"promoted_model": {"config": {"action": "force", "model_id": challenger,
                                                    "requested_by": "alice", "reason": "known-good on our data"}}}}
    assert job.execute_in_process(run_config=forced, instance=instance, raise_on_error=False).success
    assert registry.champion()["id"] == challenger
    event = registry.read()["events"][-1]
    assert event["action"] == "promote" and event["forced"] and event["by"] == "alice"
    override = read_model_lineage(challenger, workspace / "lineage")["overrides"][-1]
    assert override["action"] == "force" and override["requested_by"] == "alice"
    back = {"ops": {"promoted_model": {"config": {"action": "rollback", "requested_by": "bob",
                                                  "reason": "alice was wrong"}}}}
    assert job.execute_in_process(run_config=back, instance=instance, raise_on_error=False).success
    assert registry.champion()["id"] == before["id"]
    assert read_model_lineage(before["id"], workspace / "lineage")["overrides"][-1]["requested_by"] == "bob"

"""The code location loads, and every definition carries what the UI and the operators rely on."""

import dagster as dg
import pytest

ASSETS = ["raw_drop", "validated_drop", "dataset_version", "teacher_scores", "trained_model", "sts_eval",
          "senteval_eval", "retrieval_eval", "promoted_model", "reference_embeddings", "embedding_drift",
          "champion_index", "alignment_reference", "alignment_drift", "champion_change"]


@pytest.fixture(scope="module")
def repo(defs):
    dg.Definitions.validate_loadable(defs)
    return defs.get_repository_def()


def test_code_location_loads_from_the_module(monkeypatch, tmp_path):
    from orchestration.definitions import defs

    monkeypatch.setenv("MMCL_WORKSPACE", str(tmp_path))
    loaded = defs()
    dg.Definitions.validate_loadable(loaded)
    assert loaded.resources["workspace"].root == str(tmp_path)


def test_every_asset_is_documented(repo):
    graph = repo.asset_graph
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == set(ASSETS)
    for name in ASSETS:
        node = graph.get(dg.AssetKey(name))
        assert node.description and len(node.description) > 40, name
        assert node.group_name in {"data", "training", "evaluation", "monitoring", "retrieval"}, name
        assert node.kinds, name
        assert node.code_version and len(node.code_version) == 12, name


def test_training_is_pooled_and_retried(repo):
    node = repo.asset_graph.get(dg.AssetKey("trained_model"))
    assert node.pools == {"mmcl_training"}
    policy = repo.assets_defs_by_key[dg.AssetKey("trained_model")].op.retry_policy
    assert policy.max_retries >= 1 and policy.delay


def test_gx_checks_and_promotion_gate_are_blocking(repo):
    from mmcl.validate.suites import record_checks, schema_checks

    specs = {(s.asset_key.to_user_string(), s.name): s for s in repo.asset_graph.asset_check_keys and
             [repo.asset_graph.get_check_spec(k) for k in repo.asset_graph.asset_check_keys]}
    for check in [*schema_checks(), *record_checks()]:
        assert specs[("validated_drop", check.name)].blocking, check.name
    for key in [("dataset_version", "dvc_tracked_and_pushed"), ("dataset_version", "enough_train_records")]:
        assert specs[key].blocking, key
    assert not specs[("embedding_drift", "no_embedding_drift")].blocking  # drift starts a retrain, not a stop
    # the promotion gate shows on the evaluations but decides in promoted_model: a rejection is an outcome
    for key in [("sts_eval", "sts_not_worse_than_champion"), ("retrieval_eval", "rsum_not_worse_than_champion")]:
        assert not specs[key].blocking, key
    assert not repo.assets_defs_by_key[dg.AssetKey("promoted_model")].op.output_defs[0].is_required


def test_retrain_job_config_is_described_and_valid(repo):
    from orchestration.defs.training.config import TrainModelConfig

    for name, field in TrainModelConfig.model_fields.items():
        assert field.description and len(field.description) > 15, name
    job = repo.get_job("retrain_job")
    config = {"ops": {"trained_model": {"config": {"objective": "clip", "epochs": 2, "lr": 1e-3, "batch_size": 16,
                                                   "dataset_version": "abc", "overrides": ["seed=1"]}}}}
    assert dg.validate_run_config(job, config)
    with pytest.raises(dg.DagsterInvalidConfigError):
        dg.validate_run_config(job, {"ops": {"trained_model": {"config": {"epochs": "many"}}}})
    with pytest.raises(dg.DagsterInvalidConfigError):  # a typo is refused before the run starts
        dg.validate_run_config(job, {"ops": {"trained_model": {"config": {"objective": "clipp"}}}})
    assert job.tags["mmcl/training"] == "true"


def test_objective_choices_are_mmcls_registered_objectives():
    import mmcl.objectives
    from orchestration.defs.training.config import OBJECTIVE_NAMES

    assert list(OBJECTIVE_NAMES) == mmcl.objectives.OBJECTIVES.names()


def test_launchpad_opens_with_the_values_the_run_takes(repo):
    """Every field pre-filled from the tiny profile (its YAML + overrides), the step cap visible."""
    from mmcl.config import load_config
    from orchestration.resources import REPO_ROOT

    job = repo.get_job("retrain_job")
    prefilled = job.run_config_schema.config_type.fields["ops"].config_type.fields["trained_model"]
    defaults = prefilled.default_value["config"]
    cfg = load_config(REPO_ROOT / "configs/tiny.yaml", ["train.max_steps=3"])
    assert defaults["objective"] == "clip" and defaults["max_steps"] == 3
    assert defaults["lr"] == cfg.train.lr and defaults["text_lr"] == cfg.model.encoders["text"].lr
    assert defaults["epochs"] == cfg.train.max_epochs and defaults["batch_size"] == cfg.data.batch_size


@pytest.mark.parametrize("value", [1.0e-6, 1e-5, 5e-5, 2.5e-7, 1e20, 0.001, 3.0])
def test_launchpad_floats_reach_mmcl_exactly(value):
    """1e-06 is a string to YAML 1.1 (the bug): every float must come back as the same float."""
    from mmcl.config import load_config
    from orchestration.defs.training.config import TrainModelConfig
    from orchestration.resources import REPO_ROOT

    sets = TrainModelConfig(text_lr=value, lr=value).sets()
    cfg = load_config(REPO_ROOT / "configs/tiny.yaml", sets)
    assert cfg.model.encoders["text"].lr == value and cfg.train.lr == value


def test_schedules_and_sensors(repo):
    schedules = {s.name: s for s in repo.schedule_defs}
    assert schedules["weekly_retrain"].cron_schedule == "0 3 * * 1"
    assert schedules["weekly_retrain"].job_name == "retrain_job"
    assert schedules["daily_drift_check"].job_name == "drift_check_job"
    sensors = {s.name: s for s in repo.sensor_defs}
    assert sensors["new_drop_sensor"].job_name == "ingest_job"
    assert sensors["drift_retrain_sensor"].job_name == "retrain_job"


def test_instance_yaml_monitors_runs_and_limits_training(instance):
    assert instance.run_monitoring_enabled
    assert instance.run_monitoring_settings["start_timeout_seconds"] > 0
    config = instance.get_concurrency_config()
    assert config.pool_config.default_pool_limit == 1
    assert {"key": "mmcl/training", "value": "true", "limit": 1} in config.run_queue_config.tag_concurrency_limits
    assert instance.event_log_storage.get_concurrency_info("mmcl_training").slot_count == 1

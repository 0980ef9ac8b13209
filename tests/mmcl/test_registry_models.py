"""Champion/challenger registry: the gate, promotion, refusal, rollback, and the `mmcl models` CLI."""

import json

import pytest

from mmcl.cli import main
from mmcl.errors import UserError
from mmcl.registry_models import CHALLENGER, CHAMPION, ModelRegistry, PromotionRefused, compare_metric

STS = "sts sets=stsb max_pairs=None"
RET = "retrieval test"


def _run(tmp_path, name: str):
    run = tmp_path / "runs" / name
    run.mkdir(parents=True)
    (run / "model.pt").write_bytes(name.encode())  # the registry links files; it never loads them
    (run / "config.yaml").write_text("name: x\n")
    return run


def _registered(tmp_path, name: str, sts: float, rsum: float) -> ModelRegistry:
    registry = ModelRegistry(tmp_path / "models")
    registry.register(name, _run(tmp_path, name), dataset_md5="abc.dir")
    registry.record_metric(name, "sts_avg", sts, STS)
    registry.record_metric(name, "retrieval_rsum", rsum, RET)
    return registry


def test_first_model_is_promoted_and_its_file_kept(tmp_path):
    registry = _registered(tmp_path, "a", 70.0, 200.0)
    gate = registry.promote("a")
    assert gate.passed and gate.champion is None
    assert registry.champion()["id"] == "a" and registry.champion()["status"] == CHAMPION
    (tmp_path / "runs" / "a" / "model.pt").unlink()  # the run folder goes; the registered model stays
    assert (tmp_path / "models" / "a" / "model.pt").read_bytes() == b"a"


def test_worse_challenger_is_refused_within_tolerance_accepted(tmp_path):
    registry = _registered(tmp_path, "a", 70.0, 200.0)
    registry.promote("a")
    _registered(tmp_path, "b", 68.0, 250.0)  # STS 2 points worse: beyond the 1.0 tolerance
    with pytest.raises(PromotionRefused) as refused:
        registry.promote("b")
    assert "sts_avg: 68.00 vs champion 70.00 (tolerance 1): worse" in str(refused.value)
    assert registry.champion()["id"] == "a" and registry.entry("b")["status"] == CHALLENGER
    assert registry.promote("b", {"sts_avg": 2.5, "retrieval_rsum": 10.0}).passed  # a looser gate lets it through
    assert registry.champion()["id"] == "b"
    actions = [e["action"] for e in registry.read()["events"]]
    assert actions == ["register", "promote", "register", "refused", "promote"]


def test_rollback_restores_the_previous_champion(tmp_path):
    registry = _registered(tmp_path, "a", 70.0, 200.0)
    registry.promote("a")
    with pytest.raises(UserError, match="no previous champion"):
        registry.rollback()
    _registered(tmp_path, "b", 71.0, 210.0)
    registry.promote("b")
    assert registry.rollback() == ("b", "a")
    assert registry.champion()["id"] == "a" and registry.entry("b")["status"] == "rolled_back"


def test_gate_needs_a_value_and_the_same_protocol():
    assert not compare_metric("sts_avg", None, {"value": 70.0, "protocol": STS}, 1.0).passed
    assert not compare_metric("sts_avg", {"value": float("nan"), "protocol": STS}, None, 1.0).passed
    assert compare_metric("sts_avg", {"value": 50.0, "protocol": STS}, None, 1.0).passed  # nothing to beat
    other = compare_metric("sts_avg", {"value": 90.0, "protocol": STS}, {"value": 70.0, "protocol": "other"}, 1.0)
    assert not other.passed and "protocols differ" in other.reason


def test_models_cli(tmp_path, capsys):
    registry = _registered(tmp_path, "a", 70.0, 200.0)
    store = str(registry.root)
    assert main(["models", "--store", store, "promote", "a"]) == 0
    _registered(tmp_path, "b", 60.0, 200.0)
    assert main(["models", "--store", store, "promote", "b"]) == 2  # refused: a user-facing error, exit 2
    assert "not promoting b" in capsys.readouterr().err
    assert main(["models", "--store", store, "promote", "b", "--force", "--reason", "manual"]) == 0
    assert main(["models", "--store", store, "list"]) == 0
    listing = capsys.readouterr().out
    assert "champion    b" in listing and "retired     a" in listing
    assert main(["models", "--store", store, "rollback"]) == 0
    assert json.loads((tmp_path / "models" / "registry.json").read_text())["champion"] == "a"
    assert main(["models", "--store", store, "show", "nope"]) == 2

"""Champion/challenger registry: the gate, promotion, rejection, forced promotion, rollback, the backup, and the
`mmcl models` CLI. Hostile inputs and kills: tests/faults/test_model_*.py."""

import json

import pytest

from mmcl.cli import main
from mmcl.errors import UserError
from mmcl.registry_models import CHAMPION, REJECTED, ModelRegistry, PromotionRefused, compare_metric

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
    _registered(tmp_path, "b", 68.0, 250.0)  # STS 2 points worse: beyond the default margin (0)
    with pytest.raises(PromotionRefused) as refused:
        registry.promote("b")
    assert "sts_avg: 68.00 vs champion 70.00 (tolerance 0, point comparison: no per-item results to test): worse" in str(refused.value)
    assert registry.champion()["id"] == "a" and registry.entry("b")["status"] == REJECTED
    rejected = registry.read()["events"][-1]
    assert rejected["action"] == "rejected" and rejected["champion"] == "a"
    assert rejected["reasons"] == ["sts_avg: 68.00 vs champion 70.00 (tolerance 0, point comparison: no per-item results to test): worse"]
    assert rejected["gate"]["passed"] is False
    assert registry.promote("b", {"sts_avg": 2.5}).passed  # a looser gate lets it through
    assert registry.champion()["id"] == "b"
    actions = [e["action"] for e in registry.read()["events"]]
    assert actions == ["register", "promote", "register", "rejected", "promote"]


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


def test_a_tolerance_for_one_metric_keeps_every_other_gate(tmp_path, capsys):
    registry = _registered(tmp_path, "a", 70.0, 200.0)
    registry.promote("a")
    _registered(tmp_path, "b", 69.5, 150.0)  # STS within 1, RSUM 50 worse
    gate = registry.gate("b", {"sts_avg": 5.0})
    assert [(c.metric, c.tolerance, c.passed) for c in gate.comparisons] == [
        ("sts_avg", 5.0, True), ("retrieval_rsum", 0.0, False)]
    store = str(registry.root)
    assert main(["models", "--store", store, "promote", "b", "--tolerance", "sts_avg=1"]) == 2
    assert ("not promoting b: sts_avg: 69.50 vs champion 70.00 (tolerance 1, point comparison: no per-item results to test): not worse; retrieval_rsum: "
            "150.00 vs champion 200.00 (tolerance 0, point comparison: no per-item results to test): worse") in capsys.readouterr().err
    assert registry.champion()["id"] == "a"
    with pytest.raises(UserError, match=r"unknown gated metric 'sts' in the tolerances \(gated: sts_avg, retrieval_rsum\)"):
        registry.gate("b", {"sts": 1.0})
    with pytest.raises(UserError, match=r"tolerance of sts_avg: -1.0 is not a finite number >= 0"):
        registry.gate("b", {"sts_avg": -1.0})


def test_reject_records_the_refusal_decided_elsewhere(tmp_path):
    registry = _registered(tmp_path, "a", 70.0, 200.0)
    registry.promote("a")
    _registered(tmp_path, "b", 71.0, 210.0)
    decision = {"method": "paired bootstrap", "sts_avg": {"low": -2.1, "high": -0.4}}
    registry.reject("b", ["sts_avg: worse at 95% (interval -2.1 to -0.4)"], decision)
    assert registry.entry("b")["status"] == REJECTED and registry.champion()["id"] == "a"
    event = registry.read()["events"][-1]
    assert (event["action"], event["model"], event["champion"]) == ("rejected", "b", "a")
    assert event["reasons"] == ["sts_avg: worse at 95% (interval -2.1 to -0.4)"] and event["gate"] == decision
    with pytest.raises(UserError, match="a is the champion: roll it back"):
        registry.reject("a", ["no"], {})
    with pytest.raises(UserError, match="rejecting b needs at least one reason"):
        registry.reject("b", [], {})


def test_forced_promotion_and_rollback_record_who_and_why(tmp_path):
    registry = _registered(tmp_path, "a", 70.0, 200.0)
    registry.promote("a")
    _registered(tmp_path, "b", 60.0, 100.0)
    with pytest.raises(UserError, match="a forced promotion of b needs who forces it and why"):
        registry.promote("b", force=True, reason="hotfix")
    gate = registry.promote("b", force=True, by="alice", reason="the old champion leaks PII")
    assert not gate.passed and registry.champion()["id"] == "b"
    event = registry.read()["events"][-1]
    assert {k: event[k] for k in ("action", "model", "previous", "forced", "gate_passed", "by", "reason")} == {
        "action": "promote", "model": "b", "previous": "a", "forced": True, "gate_passed": False, "by": "alice",
        "reason": "the old champion leaks PII"}
    assert registry.rollback(by="bob", reason="b fails in production") == ("b", "a")
    event = registry.read()["events"][-1]
    assert (event["action"], event["model"], event["from"], event["by"], event["reason"]) == (
        "rollback", "a", "b", "bob", "b fails in production")


def test_cli_force_needs_a_reason_and_records_the_user(tmp_path, capsys):
    registry = _registered(tmp_path, "a", 70.0, 200.0)
    store = str(registry.root)
    assert main(["models", "--store", store, "promote", "a"]) == 0
    _registered(tmp_path, "b", 60.0, 200.0)
    assert main(["models", "--store", store, "promote", "b", "--force"]) == 2
    assert "--force needs --reason" in capsys.readouterr().err
    assert main(["models", "--store", store, "promote", "b", "--force", "--reason", "demo", "--by", "carol"]) == 0
    assert "forced past the gate by carol: demo" in capsys.readouterr().out
    assert registry.read()["events"][-1]["by"] == "carol"


def test_every_change_keeps_the_previous_registry_as_backup(tmp_path):
    registry = _registered(tmp_path, "a", 70.0, 200.0)
    before = registry.file.read_bytes()
    registry.promote("a")
    assert registry.backup.read_bytes() == before  # the state before the last change
    assert json.loads(registry.backup.read_text())["champion"] is None
    assert not [p.name for p in registry.root.rglob("*") if "tmp" in p.name]

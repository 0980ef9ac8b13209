"""Model lineage records and cards: what produced a model, readable by `mmcl lineage model <id>`."""

import json

import yaml

from mmcl.cli import main
from mmcl.lineage import LineageStore
from mmcl.model_card import add_evaluation, model_lineage, render_model_card, write_model_lineage


def _run_dir(tmp_path):
    run = tmp_path / "runs" / "tiny-abc"
    run.mkdir(parents=True)
    config = {"name": "tiny", "seed": 0, "data": {"modalities": ["text", "image"], "batch_size": 8},
              "model": {"embed_dim": 32, "encoders": {"text": {"name": "hf_text"}, "image": {"name": "eff", "freeze": True},
                                                       "audio": {"name": "audio_conv"}}},
              "objective": {"name": "clip"}, "train": {"max_epochs": 1, "lr": 0.001}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (run / "config_hash.txt").write_text("abc\n")
    (run / "metrics.json").write_text(json.dumps({"global_step": 3, "fit_seconds": 1.5, "epochs": 1}))
    return run


def test_record_card_and_cli(tmp_path, capsys):
    dataset = {"md5": "f00.dir", "dataset_dir": "data/dataset", "source_drops": ["drop-0001"],
               "validation": {"totals": {"rows": 24, "accepted": 22}, "drops": [], "rejected_drops": []},
               "row_counts": {"records": 22}}
    LineageStore(tmp_path / "lineage").write("dataset", "f00.dir", dataset)
    record = model_lineage("tiny-abc", _run_dir(tmp_path), dataset=dataset, teacher={"name": "minilm-text"})
    assert record["config_hash"] == "abc" and record["training"]["global_step"] == 3
    assert record["code"]["mmcl_sha256"] and "rev" in record["code"]
    record = add_evaluation(record, "sts", {"avg": 71.5, "protocol": "sts sets=stsb"})
    write_model_lineage(record, tmp_path / "lineage")
    card = render_model_card(record, {"status": "champion", "promoted_at": "now"})
    assert "f00.dir" in card and "drop-0001" in card and "| sts | avg 71.50 | sts sets=stsb |" in card
    assert "audio encoder" not in card  # only the modalities it was trained on
    assert main(["lineage", "model", "tiny", "--store", str(tmp_path / "lineage")]) == 0
    out = capsys.readouterr().out
    assert "dataset: f00.dir" in out and "eval sts: avg=71.50" in out and "teacher: minilm-text" in out

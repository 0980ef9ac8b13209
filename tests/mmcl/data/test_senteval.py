"""SentEval readers: counts on the real data, and clear errors on malformed or missing files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmcl.data.senteval import (
    STS_SETS,
    load_sts,
    load_transfer_corpus,
    load_transfer_task,
    normalize_sentence,
)
from mmcl.errors import DataError, MissingDataError

# scored pairs per set, from shared/data/PROVENANCE.md
STS_PAIRS = {
    "sts12": 3108,
    "sts13": 1500,
    "sts14": 3750,
    "sts15": 3000,
    "sts16": 1186,
    "stsb": 1379,
    "sickr": 4927,
}


def test_real_sts_counts_match_provenance(data_root):
    for name in STS_SETS:
        subsets = load_sts(name, data_root)
        assert sum(len(s) for s in subsets) == STS_PAIRS[name], name
        for s in subsets:
            assert len(s.sentences1) == len(s.sentences2) == len(s.scores)
            assert np.isfinite(s.scores).all()
    sts16 = load_sts("sts16", data_root)
    assert sum(s.n_skipped for s in sts16) > 0  # unscored lines were dropped, not read as zeros
    assert [len(s) for s in load_sts("stsb", data_root, "dev")] == [1500]


def test_real_transfer_counts_match_provenance(data_root):
    sizes = {
        name: {k: len(v) for k, v in load_transfer_task(name, data_root).splits.items()}
        for name in ("MR", "CR", "SUBJ", "MPQA", "SST2", "TREC", "MRPC")
    }
    assert sizes["MR"] == {"all": 10662} and sizes["CR"] == {"all": 3775}
    assert sizes["SUBJ"] == {"all": 10000} and sizes["MPQA"] == {"all": 10606}
    assert sizes["SST2"] == {"train": 67349, "dev": 872, "test": 1821}
    assert sizes["TREC"] == {"train": 5452, "test": 500}  # train_5500.label is Latin-1
    assert sizes["MRPC"] == {"train": 4076, "test": 1725}
    assert set(load_transfer_task("TREC", data_root).splits["train"].labels) == set(range(6))


def test_transfer_corpus_is_unique_unlabelled_text(data_root):
    corpus = load_transfer_corpus(data_root, tasks=("MR", "MRPC"))
    assert len(corpus) == len(set(corpus)) > 10000
    assert all(isinstance(s, str) and s for s in corpus)


def test_normalize_sentence_like_senteval():
    assert normalize_sentence("  a  b\tc ") == "a b c"
    assert normalize_sentence("   ") == "."


def _layout(root: Path, files: dict[str, str]) -> Path:
    base = root / "senteval" / "downstream"
    for rel, text in files.items():
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


STS12 = "STS/STS12-en-test/"


def test_sts_year_reads_and_skips_empty_gold(tmp_path):
    root = _layout(
        tmp_path, {STS12 + "STS.input.x.txt": "a  b\tc d\ne\tf\ng\th\n", STS12 + "STS.gs.x.txt": "1.5\n\n4\n"}
    )
    (sub,) = load_sts("sts12", root)
    assert sub.sentences1 == ["a b", "g"] and list(sub.scores) == [1.5, 4.0] and sub.n_skipped == 1


def test_wrong_column_count_names_file_and_line(tmp_path):
    root = _layout(tmp_path, {STS12 + "STS.input.x.txt": "a\tb\nc\td\te\n", STS12 + "STS.gs.x.txt": "1\n2\n"})
    with pytest.raises(DataError) as err:
        load_sts("sts12", root)
    assert err.value.row == 2 and err.value.path.name == "STS.input.x.txt"
    assert "STS.input.x.txt, line 2" in str(err.value) and "expected 2 tab-separated columns, found 3" in str(
        err.value
    )


def test_non_numeric_gold_names_file_line_and_field(tmp_path):
    root = _layout(tmp_path, {STS12 + "STS.input.x.txt": "a\tb\nc\td\n", STS12 + "STS.gs.x.txt": "1\nhigh\n"})
    with pytest.raises(
        DataError, match=r"STS\.gs\.x\.txt, line 2, field 'score': gold score 'high' is not a number"
    ):
        load_sts("sts12", root)


def test_gold_and_input_line_counts_must_agree(tmp_path):
    root = _layout(tmp_path, {STS12 + "STS.input.x.txt": "a\tb\nc\td\n", STS12 + "STS.gs.x.txt": "1\n"})
    with pytest.raises(DataError, match="1 gold lines but STS.input.x.txt has 2"):
        load_sts("sts12", root)


def test_stsb_and_sick_malformed_lines(tmp_path):
    root = _layout(
        tmp_path,
        {
            "STS/STSBenchmark/sts-test.csv": "g\tf\ty\t1\t2.5\ta\tb\ng\tf\ty\t2\t3.0\tonly one sentence\n",
            "SICK/SICK_test_annotated.txt": "pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment\n"
            "1\ta\tb\t4.5\tNEUTRAL\n2\tc\td\tn/a\tNEUTRAL\n",
        },
    )
    with pytest.raises(
        DataError, match=r"sts-test\.csv, line 2: expected at least 7 tab-separated columns, found 6"
    ):
        load_sts("stsb", root)
    with pytest.raises(DataError, match=r"SICK_test_annotated\.txt, line 3, field 'relatedness_score'"):
        load_sts("sickr", root)


def test_transfer_malformed_lines(tmp_path):
    root = _layout(
        tmp_path,
        {
            "SST/binary/sentiment-train": "good film\t1\nbad film\t2\n",
            "SST/binary/sentiment-dev": "ok\t1\n",
            "SST/binary/sentiment-test": "ok\t0\n",
            "TREC/train_5500.label": "NUM:dist How far ?\nno colon here\n",
            "TREC/TREC_10.label": "HUM:ind Who ?\n",
            "MRPC/msr_paraphrase_train.txt": "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\ta\n",
            "MRPC/msr_paraphrase_test.txt": "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n",
        },
    )
    with pytest.raises(DataError, match=r"sentiment-train, line 2, field 'label': label 2 is outside 0\.\.1"):
        load_transfer_task("SST2", root)
    with pytest.raises(DataError, match=r"train_5500\.label, line 2: expected 'COARSE:fine question'"):
        load_transfer_task("TREC", root)
    with pytest.raises(
        DataError, match=r"msr_paraphrase_train\.txt, line 2: expected 5 tab-separated columns, found 4"
    ):
        load_transfer_task("MRPC", root)


def test_latin1_file_is_read(tmp_path):
    root = _layout(tmp_path, {"TREC/TREC_10.label": "HUM:ind Who ?\n"})
    path = root / "senteval/downstream/TREC/train_5500.label"
    path.write_bytes("ENTY:other What is a caf\xe9 ?\n".encode("latin-1"))
    assert load_transfer_task("TREC", root).splits["train"].sentences == ["What is a café ?"]


def test_missing_dataset_folder_message(tmp_path):
    with pytest.raises(
        MissingDataError, match=r"senteval/downstream is missing from the data directory"
    ) as err:
        load_sts("sts12", tmp_path)
    assert "get_transfer_data.bash" in str(err.value)  # says how to fetch it
    root = _layout(tmp_path, {STS12 + "STS.input.x.txt": "a\tb\n", STS12 + "STS.gs.x.txt": "1\n"})
    with pytest.raises(MissingDataError, match=r"STS folder not found: .*STS13-en-test is missing"):
        load_sts("sts13", root)
    with pytest.raises(MissingDataError, match=r"SentEval file not found: .*rt-polarity\.pos"):
        load_transfer_task("MR", root)

"""Readers for the SentEval downstream layout: STS12-16, STS-B, SICK-R and the transfer tasks.

The folder is `<data_dir>/senteval/downstream` (see shared/data/PROVENANCE.md). Parsing follows
SentEval (facebookresearch/SentEval, senteval/sts.py, sick.py, binary.py, sst.py, trec.py, mrpc.py) so
that numbers are comparable with SimCSE / MCSE / KDMCSE:

- sentences are whitespace-normalised (`" ".join(s.split())`, SentEval tokenises with `split()` and the
  SimCSE batcher joins with a space); an empty sentence becomes "." as in SentEval's batchers;
- STS pairs whose gold line is empty are unscored and skipped (STS15/16 ship such lines);
- files are read as UTF-8, falling back to Latin-1 for the one SentEval file that is not UTF-8
  (TREC train_5500.label); lines are split on "\\n" only, so line numbers in errors are the editor's.

A malformed line (wrong column count, non-numeric score or label) raises DataError naming the file,
the 1-based line number and the field. A missing folder raises MissingDataError with the fetch help.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmcl.data.paths import ENV_VAR, FETCH_HELP, dataset_dir, default_data_dir
from mmcl.errors import DataError, MissingDataError

SENTEVAL_SUBDIR = "senteval/downstream"
STS_YEARS = {
    "sts12": "STS/STS12-en-test",
    "sts13": "STS/STS13-en-test",
    "sts14": "STS/STS14-en-test",
    "sts15": "STS/STS15-en-test",
    "sts16": "STS/STS16-en-test",
}
STS_SETS = (*STS_YEARS, "stsb", "sickr")
STSB_FILES = {"train": "sts-train.csv", "dev": "sts-dev.csv", "test": "sts-test.csv"}
SICK_FILES = {"train": "SICK_train.txt", "dev": "SICK_trial.txt", "test": "SICK_test_annotated.txt"}

TRANSFER_TASKS = ("MR", "CR", "SUBJ", "MPQA", "SST2", "TREC", "MRPC")
# binary sentence-per-line tasks: (folder, file labelled 1, file labelled 0), as SentEval's binary.py
_BINARY_FILES = {
    "MR": ("MR", "rt-polarity.pos", "rt-polarity.neg"),
    "CR": ("CR", "custrev.pos", "custrev.neg"),
    "SUBJ": ("SUBJ", "subj.objective", "subj.subjective"),
    "MPQA": ("MPQA", "mpqa.pos", "mpqa.neg"),
}
TREC_CLASSES = ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM")  # SentEval's tgt2idx order


@dataclass(frozen=True)
class StsSubset:
    """One scored file of an STS set: pairs with a gold score (unscored pairs already dropped)."""

    name: str  # e.g. "MSRpar", or the split ("test") for STS-B / SICK-R
    sentences1: list[str]
    sentences2: list[str]
    scores: np.ndarray  # float64 [N]
    source: Path
    n_skipped: int = 0  # pairs dropped for an empty gold score

    def __len__(self) -> int:
        return len(self.scores)


@dataclass(frozen=True)
class TransferSplit:
    """Labelled sentences (or sentence pairs when sentences2 is set, e.g. MRPC)."""

    sentences: list[str]
    labels: np.ndarray  # int64 [N]
    sentences2: list[str] | None = None

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class TransferTask:
    """A SentEval transfer task. protocol "cv": one split "all" for k-fold CV; "split": train/(dev)/test."""

    name: str
    splits: dict[str, TransferSplit]
    n_classes: int
    protocol: str


def senteval_dir(data_dir: str | Path | None = None) -> Path:
    """`<data_dir>/senteval/downstream`, or MissingDataError with the fetch commands."""
    return dataset_dir(SENTEVAL_SUBDIR, data_dir)


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise MissingDataError(
            f"{what} not found: {path} is missing.\n"
            + FETCH_HELP.format(env=ENV_VAR, default=default_data_dir())
        )
    return path


def _read_lines(path: Path) -> list[str]:
    """Lines split on "\\n" only (so a stray U+2028 inside a sentence cannot shift line numbers)."""
    raw = _require(path, "SentEval file").read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:  # TREC train_5500.label is Latin-1, as SentEval reads it
        text = raw.decode("latin-1")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def normalize_sentence(text: str) -> str:
    """SentEval's whitespace tokenisation re-joined with single spaces; "" becomes "." like its batchers."""
    return " ".join(text.split()) or "."


def _columns(line: str, path: Path, row: int, expected: int, *, at_least: bool = False) -> list[str]:
    cols = line.split("\t")
    ok = len(cols) >= expected if at_least else len(cols) == expected
    if not ok:
        need = f"at least {expected}" if at_least else str(expected)
        raise DataError(path, f"expected {need} tab-separated columns, found {len(cols)}", row=row)
    return cols


def _score(text: str, path: Path, row: int, field: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataError(path, f"gold score {text.strip()!r} is not a number", row=row, field=field) from None
    if not np.isfinite(value):
        raise DataError(path, f"gold score {text.strip()!r} is not finite", row=row, field=field)
    return value


def _label(text: str, path: Path, row: int, field: str, allowed: range) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise DataError(path, f"label {text.strip()!r} is not an integer", row=row, field=field) from None
    if value not in allowed:
        raise DataError(
            path, f"label {value} is outside {allowed.start}..{allowed.stop - 1}", row=row, field=field
        )
    return value


def _subset(name: str, source: Path, rows: list[tuple[str, str, float]], skipped: int) -> StsSubset:
    if not rows:
        raise DataError(source, "no scored sentence pairs in this file")
    s1, s2, scores = zip(*rows, strict=True)
    return StsSubset(name, list(s1), list(s2), np.asarray(scores, dtype=np.float64), source, skipped)


def read_sts_pair_files(input_path: Path, gold_path: Path, name: str) -> StsSubset:
    """STS12-16 `STS.input.<name>.txt` (two tab-separated sentences) + `STS.gs.<name>.txt` (score or empty).

    The SemEval STS16 release carries two more columns (the sources of the pair); as SentEval and MTEB,
    the first two columns are the sentences and the sources are ignored."""
    pairs, golds = _read_lines(input_path), _read_lines(gold_path)
    if len(pairs) != len(golds):
        raise DataError(
            gold_path, f"{len(golds)} gold lines but {input_path.name} has {len(pairs)} sentence pairs"
        )
    rows, skipped = [], 0
    for row, (pair, gold) in enumerate(zip(pairs, golds, strict=True), start=1):
        cols = pair.split("\t")
        if len(cols) not in (2, 4):  # 3 or 5+: a tab inside a sentence, the pair cannot be told apart
            raise DataError(
                input_path,
                f"expected 2 tab-separated columns, found {len(cols)} (4 are read too: the pair and its two "
                "sources, as in the SemEval STS16 release)",
                row=row,
            )
        s1, s2 = cols[:2]
        if not gold.strip():  # unscored pair: SentEval drops it (raw_scores != '')
            skipped += 1
            continue
        rows.append((normalize_sentence(s1), normalize_sentence(s2), _score(gold, gold_path, row, "score")))
    return _subset(name, gold_path, rows, skipped)


def load_sts_year(folder: Path) -> list[StsSubset]:
    """All subsets of one STS12-16 folder, sorted by name; every input file needs its gold file."""
    _require(folder, "STS folder")
    inputs = sorted(folder.glob("STS.input.*.txt"))
    if not inputs:
        raise MissingDataError(f"no STS.input.*.txt files in {folder}")
    subsets = []
    for input_path in inputs:
        name = input_path.name[len("STS.input.") : -len(".txt")]
        gold_path = folder / f"STS.gs.{name}.txt"
        subsets.append(read_sts_pair_files(input_path, _require(gold_path, "STS gold file"), name))
    return subsets


def read_stsb(path: Path, name: str = "test") -> StsSubset:
    """STS-B csv, tab-separated: genre, file, year, id, score, sentence1, sentence2 (extra columns ignored,
    as SentEval reads text[4:7]; the original STS-B release carries source columns on some rows)."""
    rows, skipped = [], 0
    for row, line in enumerate(_read_lines(path), start=1):
        cols = _columns(line, path, row, 7, at_least=True)
        if not cols[4].strip():
            skipped += 1
            continue
        rows.append(
            (normalize_sentence(cols[5]), normalize_sentence(cols[6]), _score(cols[4], path, row, "score"))
        )
    return _subset(name, path, rows, skipped)


def read_sick(path: Path, name: str = "test") -> StsSubset:
    """SICK txt with a header: pair_ID, sentence_A, sentence_B, relatedness_score, entailment_judgment."""
    lines = _read_lines(path)
    if not lines:
        raise DataError(path, "empty file (expected a header line)")
    header = lines[0].split("\t")
    needed = ("sentence_A", "sentence_B", "relatedness_score")
    missing = [col for col in needed if col not in header]
    if missing:
        raise DataError(path, f"header lacks column(s) {missing}", row=1)
    ia, ib, iscore = (header.index(col) for col in needed)
    rows, skipped = [], 0
    for row, line in enumerate(lines[1:], start=2):
        cols = _columns(line, path, row, len(header))
        if not cols[iscore].strip():
            skipped += 1
            continue
        score = _score(cols[iscore], path, row, "relatedness_score")
        rows.append((normalize_sentence(cols[ia]), normalize_sentence(cols[ib]), score))
    return _subset(name, path, rows, skipped)


def load_sts(name: str, data_dir: str | Path | None = None, split: str = "test") -> list[StsSubset]:
    """Subsets of one STS set (`sts12`..`sts16`, `stsb`, `sickr`); `split` applies to STS-B and SICK-R."""
    root = senteval_dir(data_dir)
    if name in STS_YEARS:
        return load_sts_year(root / STS_YEARS[name])
    if name in ("stsb", "sickr") and split not in STSB_FILES:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(STSB_FILES)}")
    if name == "stsb":
        return [read_stsb(_require(root / "STS" / "STSBenchmark" / STSB_FILES[split], "STS-B file"), split)]
    if name == "sickr":
        return [read_sick(_require(root / "SICK" / SICK_FILES[split], "SICK file"), split)]
    raise ValueError(f"unknown STS set {name!r}; expected one of {STS_SETS}")


# ---------------------------------------------------------------- transfer tasks


def _read_sentences(path: Path) -> list[str]:
    return [normalize_sentence(line) for line in _read_lines(path)]


def _binary_task(root: Path, name: str) -> TransferTask:
    folder, pos_file, neg_file = _BINARY_FILES[name]
    pos = _read_sentences(root / folder / pos_file)
    neg = _read_sentences(root / folder / neg_file)
    labels = np.asarray([1] * len(pos) + [0] * len(neg), dtype=np.int64)
    return TransferTask(name, {"all": TransferSplit(pos + neg, labels)}, 2, "cv")


def _read_sst(path: Path) -> TransferSplit:
    sentences, labels = [], []
    for row, line in enumerate(_read_lines(path), start=1):
        text, label = _columns(line, path, row, 2)
        sentences.append(normalize_sentence(text))
        labels.append(_label(label, path, row, "label", range(2)))
    return TransferSplit(sentences, np.asarray(labels, dtype=np.int64))


def _read_trec(path: Path) -> TransferSplit:
    """`COARSE:fine question words ...` -> coarse class index (6 classes, SentEval's order)."""
    sentences, labels = [], []
    for row, line in enumerate(_read_lines(path), start=1):
        target, sep, rest = line.partition(":")
        fine, space, question = rest.partition(" ")
        if not sep or not space or not fine:
            raise DataError(path, "expected 'COARSE:fine question', e.g. 'NUM:dist How far ...'", row=row)
        if target not in TREC_CLASSES:
            raise DataError(
                path, f"unknown TREC class {target!r}; expected one of {TREC_CLASSES}", row=row, field="label"
            )
        sentences.append(normalize_sentence(question))
        labels.append(TREC_CLASSES.index(target))
    return TransferSplit(sentences, np.asarray(labels, dtype=np.int64))


def _read_mrpc(path: Path) -> TransferSplit:
    """Header, then Quality, #1 ID, #2 ID, #1 String, #2 String."""
    s1, s2, labels = [], [], []
    for row, line in enumerate(_read_lines(path)[1:], start=2):
        cols = _columns(line, path, row, 5)
        labels.append(_label(cols[0], path, row, "Quality", range(2)))
        s1.append(normalize_sentence(cols[3]))
        s2.append(normalize_sentence(cols[4]))
    return TransferSplit(s1, np.asarray(labels, dtype=np.int64), s2)


def load_transfer_task(name: str, data_dir: str | Path | None = None) -> TransferTask:
    """One of TRANSFER_TASKS with SentEval's splits (MR/CR/SUBJ/MPQA: one "all" split for 10-fold CV)."""
    root = senteval_dir(data_dir)
    if name in _BINARY_FILES:
        return _binary_task(root, name)
    if name == "SST2":
        sst = root / "SST" / "binary"
        splits = {s: _read_sst(sst / f"sentiment-{s}") for s in ("train", "dev", "test")}
        return TransferTask(name, splits, 2, "split")
    if name == "TREC":
        splits = {
            "train": _read_trec(root / "TREC" / "train_5500.label"),
            "test": _read_trec(root / "TREC" / "TREC_10.label"),
        }
        return TransferTask(name, splits, len(TREC_CLASSES), "split")
    if name == "MRPC":
        mrpc = root / "MRPC"
        splits = {s: _read_mrpc(mrpc / f"msr_paraphrase_{s}.txt") for s in ("train", "test")}
        return TransferTask(name, splits, 2, "split")
    raise ValueError(f"unknown transfer task {name!r}; expected one of {TRANSFER_TASKS}")


def load_transfer_corpus(
    data_dir: str | Path | None = None, tasks: tuple[str, ...] = TRANSFER_TASKS
) -> list[str]:
    """Every sentence of the transfer tasks, unlabelled, de-duplicated in first-seen order (a text corpus).

    Relations: includes the test splits; a model trained on it and then evaluated on these tasks has seen
    their (unlabelled) test sentences.
    """
    seen: dict[str, None] = {}
    for name in tasks:
        for split in load_transfer_task(name, data_dir).splits.values():
            for sentence in split.sentences + (split.sentences2 or []):
                seen.setdefault(sentence, None)
    return list(seen)

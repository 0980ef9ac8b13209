"""Bad embedding input gives a clear error naming file, row and field, never a score."""

from __future__ import annotations

import numpy as np
import pytest

from mmcl.errors import DataError, UserError
from mmcl.monitor.detector import detect_drift
from mmcl.monitor.validate_inputs import check_embeddings, load_embeddings


@pytest.fixture()
def good(text_sets):
    return text_sets["captions"][:60].astype(np.float64)


def test_mismatched_dimensions(good):
    with pytest.raises(UserError, match="dimension mismatch.*384 dims.*100"):
        detect_drift(good, good[:, :100], methods=("centroid",))


@pytest.mark.parametrize("value, kind", [(np.nan, "NaN"), (np.inf, "inf"), (-np.inf, "inf")])
def test_non_finite_rows_are_named(good, value, kind):
    bad = good.copy()
    bad[7, 13] = value
    with pytest.raises(
        DataError, match=rf"cur.npy, line 8, field 'dim 13': {kind} value at row index 7"
    ) as err:
        check_embeddings(bad, "cur.npy")
    assert err.value.row == 8 and err.value.field == "dim 13"


def test_empty_tiny_and_degenerate_sets(good):
    with pytest.raises(DataError, match="empty"):
        check_embeddings(np.zeros((0, 384)), "ref.npy")
    with pytest.raises(DataError, match="only 5 rows; a drift test needs at least 20"):
        check_embeddings(good[:5], "ref.npy")
    with pytest.raises(DataError, match="2-D"):
        check_embeddings(good[0], "ref.npy")
    zero_row = good.copy()
    zero_row[3] = 0
    with pytest.raises(DataError, match="row index 3.*all-zero"):
        check_embeddings(zero_row, "ref.npy")
    with pytest.raises(DataError, match="identical"):
        check_embeddings(np.tile(good[:1], (30, 1)), "ref.npy")


def test_files_that_are_not_embedding_matrices(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_embeddings(tmp_path / "missing.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="obj.npy.*not a readable"):
        load_embeddings(tmp_path / "obj.npy")
    np.save(tmp_path / "txt.npy", np.array(["a", "b"]))
    with pytest.raises(DataError, match="real numbers"):
        load_embeddings(tmp_path / "txt.npy")
    (tmp_path / "emb.csv").write_text("1,2\n")
    with pytest.raises(DataError, match="expected a .npy"):
        load_embeddings(tmp_path / "emb.csv")
    (tmp_path / "broken.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DataError, match="broken.npy"):
        load_embeddings(tmp_path / "broken.npy")


def test_cli_prints_the_error_and_exits_2(tmp_path, good, capsys):
    from mmcl.cli import main

    bad = good.copy()
    bad[2, 5] = np.nan
    np.save(tmp_path / "ref.npy", good)
    np.save(tmp_path / "cur.npy", bad)
    code = main(
        [
            "drift",
            "--reference",
            str(tmp_path / "ref.npy"),
            "--current",
            str(tmp_path / "cur.npy"),
            "--output",
            str(tmp_path / "out.json"),
        ]
    )
    assert code == 2
    assert "line 3, field 'dim 5': NaN" in capsys.readouterr().err
    assert not (tmp_path / "out.json").exists()

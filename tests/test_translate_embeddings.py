from pathlib import Path

import numpy as np
import pytest

from unitrans.errors import InputError, UnitransError
from unitrans.translate.embeddings import WordEmbeddings, load_npz, load_vec, normalize, save_npz, write_vec

FIXTURES = Path(__file__).parent / "fixtures" / "translate"


def test_load_vec_keeps_order_and_first_duplicate():
    emb = load_vec(FIXTURES / "small.vec")
    assert emb.words == ("the", "city", "madrid")
    np.testing.assert_array_equal(emb.vectors[0], [1.0, 0.0, 0.0])  # the repeated 'the' is ignored
    assert emb.dim == 3


def test_load_vec_vocabulary_cap():
    assert load_vec(FIXTURES / "small.vec", max_vocab=2).words == ("the", "city")


def test_malformed_line_reports_file_and_line():
    with pytest.raises(InputError) as err:
        load_vec(FIXTURES / "bad.vec")
    assert str(err.value).startswith(f"{FIXTURES / 'bad.vec'}:3: ")
    assert "3 numbers" in str(err.value)


def test_bad_header_and_non_number(tmp_path):
    (tmp_path / "h.vec").write_text("the 1.0 2.0\n")
    with pytest.raises(InputError, match=r"h.vec:1: expected a header"):
        load_vec(tmp_path / "h.vec")
    (tmp_path / "n.vec").write_text("1 2\nthe 1.0 x\n")
    with pytest.raises(InputError, match=r"n.vec:2: "):
        load_vec(tmp_path / "n.vec")
    with pytest.raises(UnitransError, match="not found"):
        load_vec(tmp_path / "missing.vec")


def test_write_then_load_round_trip(tmp_path):
    emb = WordEmbeddings(("a", "b"), np.array([[0.5, -1.0], [2.0, 0.25]], dtype=np.float32))
    write_vec(tmp_path / "x.vec", emb)
    back = load_vec(tmp_path / "x.vec")
    assert back.words == emb.words
    np.testing.assert_allclose(back.vectors, emb.vectors)


def test_normalize_center_renorm():
    x = np.array([[3.0, 0.0], [1.0, 2.0], [2.0, 4.0]], dtype=np.float32)
    y = normalize(x, "center,renorm")
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(normalize(x, "center").mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_array_equal(normalize(x, ""), x)
    with pytest.raises(UnitransError):
        normalize(x, "whiten")


def test_npz_cache_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    sets = {
        str(layer): WordEmbeddings(
            ("x", "y", "z"), rng.normal(size=(3, 4)).astype(np.float32), np.array([5, 2, 1])
        )
        for layer in (4, 8)
    }
    save_npz(tmp_path / "c.npz", sets)
    back = load_npz(tmp_path / "c.npz")
    assert set(back) == {"4", "8"}
    assert back["8"].words == ("x", "y", "z")
    np.testing.assert_allclose(
        back["8"].vectors, sets["8"].vectors, rtol=1e-3, atol=1e-3
    )  # stored as float16
    np.testing.assert_array_equal(back["4"].counts, [5, 2, 1])

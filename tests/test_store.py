"""Our own store: lossless, compact, transactional, safe."""

from __future__ import annotations

import numpy as np
import pytest

from horm.data.convert import convert
from horm.data.sample import Sample
from horm.data.store import HessianStore, decode_hessian, encode_hessian
from horm.errors import DataError


def test_convert_horm_sample_is_bit_identical(tmp_path, horm_sample_path, horm_samples):
    store = convert(horm_sample_path, tmp_path / "s.hstore", show_progress=False)
    store.close()
    back = HessianStore.open(tmp_path / "s.hstore")
    assert len(back) == 100
    for a, b in zip(horm_samples, back):
        for f in ("pos", "forces", "hessian"):
            x, y = getattr(a, f), getattr(b, f)
            assert x.dtype == y.dtype == np.float32 and np.array_equal(x.view(np.uint32), y.view(np.uint32)), f
        assert np.array_equal(a.numbers, b.numbers)
        assert np.float32(b.energy) == np.float32(a.energy)
        assert np.array_equal(a.extras["ae"], b.extras["ae"]) and a.rxn == b.rxn
    meta = back.meta
    assert meta["count"] == 100 and meta["units"]["hessian"] == "eV/Å²" and "ωB97X" in meta["level_of_theory"]
    # compact: at most half the bytes per sample of the published format
    ratio = (tmp_path / "s.hstore").stat().st_size / horm_sample_path.stat().st_size
    assert ratio <= 0.5, ratio


def test_hessian_codec_exact_for_symmetric_and_asymmetric():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(30, 30)).astype(np.float32)
    sym = (a + a.T) / 2
    enc = encode_hessian(sym)
    assert "x" not in enc  # symmetric: upper triangle only
    assert np.array_equal(decode_hessian(enc), sym)
    asym = sym + rng.normal(scale=1e-4, size=sym.shape).astype(np.float32)
    assert np.array_equal(decode_hessian(encode_hessian(asym)).view(np.uint32), asym.view(np.uint32))
    nasty = np.array([[0.0, -0.0], [np.float32(1e-38), np.float32(3.4e38)]], dtype=np.float32)
    assert np.array_equal(decode_hessian(encode_hessian(nasty)).view(np.uint32), nasty.view(np.uint32))


def _water(key="", shift=0.0):
    return Sample(numbers=np.array([8, 1, 1]), pos=np.array([[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93 + shift, 0]]),
                  energy=-2079.0, forces=np.zeros((3, 3)), hessian=np.eye(9), key=key, rxn="r1")


def test_append_reopen_keys_failures(tmp_path):
    p = tmp_path / "w.hstore"
    st = HessianStore.create(p, "GFN2-xTB", chunk_size=4)
    for k in range(10):
        st.append(_water(f"w{k}", 0.01 * k))
    st.record_failure("bad1", "SCF not converged", cycles=1)
    st.record_failure("bad1", "SCF not converged", cycles=2)  # replaces its row, counted once
    st.close()
    st = HessianStore.open(p, readonly=False)
    assert len(st) == 10 and st.keys() == {f"w{k}" for k in range(10)}
    assert [f["key"] for f in st.failures()] == ["bad1"] and st.meta["n_failures"] == 1
    assert st[7].pos[2, 1] == pytest.approx(0.93 + 0.07)
    with pytest.raises(DataError, match="duplicate key"):
        st.append(_water("w3"))
    # a later success clears the failure row
    st.append(_water("bad1"))
    assert st.failures() == [] and len(st) == 11 and st.meta["n_failures"] == 0


def test_extend_is_all_or_nothing(tmp_path):
    st = HessianStore.create(tmp_path / "a.hstore", "x", chunk_size=4)
    st.extend([_water(f"a{k}") for k in range(5)])
    bad = _water("nan")
    bad.forces = np.full((3, 3), np.nan)
    with pytest.raises(DataError, match="NaN"):
        st.extend([_water("b0"), _water("b1"), bad])
    assert len(st) == 5 and not st.has_key("b0")
    assert [s.key for s in st] == [f"a{k}" for k in range(5)]


def test_wrong_hessian_size_rejected_with_source(tmp_path):
    st = HessianStore.create(tmp_path / "h.hstore", "x")
    s = _water("h")
    s.hessian = np.eye(6)
    with pytest.raises(DataError) as exc:
        st.append(s)
    assert "h.hstore" in str(exc.value) and "(9, 9)" in str(exc.value)
    assert len(st) == 0


def test_store_refuses_non_store_and_truncation(tmp_path, horm_sample_path):
    with pytest.raises(DataError, match="not a horm store"):
        HessianStore.open(horm_sample_path)
    st = convert(horm_sample_path, tmp_path / "t.hstore", show_progress=False)
    st.close()
    data = (tmp_path / "t.hstore").read_bytes()
    (tmp_path / "cut.hstore").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as exc:
        for _ in HessianStore.open(tmp_path / "cut.hstore"):
            pass
    assert "cut.hstore" in str(exc.value)

"""Threads, device and dtype settings: auto threads by molecule size, limits restored afterwards."""

from __future__ import annotations

import pytest
import torch


def test_auto_threads_is_one_for_small_molecules_and_default_for_large():
    from horm.runtime import SMALL_MOLECULE_ATOMS, auto_threads

    assert auto_threads(None, 15) == 1
    assert auto_threads(None, SMALL_MOLECULE_ATOMS) is None
    assert auto_threads(3, 15) == 3
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="threads"):
            auto_threads(bad, 15)


def test_thread_limit_applies_to_torch_and_blas_and_is_restored():
    from threadpoolctl import threadpool_info, threadpool_limits

    from horm.runtime import thread_limit

    def blas():  # per library: a single-threaded OpenBLAS build (pyscf/tblite bring one) always says 1
        return {d["filepath"]: d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"}

    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with threadpool_limits(2):  # a known starting point: 2 threads wherever a library can
            before = blas()
            assert 2 in before.values()
            with thread_limit(1):
                assert torch.get_num_threads() == 1
                assert set(blas().values()) == {1}
            assert torch.get_num_threads() == 2
            assert blas() == before
    finally:
        torch.set_num_threads(old)


def test_default_workers_is_one_per_core_and_never_more_than_jobs():
    from horm.runtime import cpu_count, default_workers

    assert default_workers() == cpu_count()
    assert default_workers(1) == 1
    assert default_workers(10_000) == cpu_count()


def test_resolve_dtype_and_device():
    from horm.runtime import resolve_device, resolve_dtype

    assert resolve_dtype("float64") is torch.float64
    assert resolve_dtype(torch.float32) is torch.float32
    assert resolve_dtype(None) is None
    with pytest.raises(ValueError, match="float32, float64"):
        resolve_dtype(torch.int64)
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="cpu, cuda"):
        resolve_device("tpu")


def test_an_engine_with_its_own_thread_setting_keeps_control():
    from horm.label import get_engine
    from horm.runtime import threads_for
    from horm.calculators.potential import load_potential

    assert threads_for(get_engine("xtb"), None, 12) == 1
    assert threads_for(get_engine("dft"), None, 12) is None  # PySCF's own setting (environment by default)
    assert load_potential("dft", threads=3).potential.threads == 3

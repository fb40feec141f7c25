"""Shared fixtures. Tests that read ../shared skip with a clear reason when it is absent."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HORM_CACHE_DIR", tempfile.mkdtemp(prefix="horm-test-cache-"))  # indexes and references of this run

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
HORM_SAMPLE = SHARED / "data" / "horm_sample_100.lmdb"
T1X_DIR = SHARED / "data" / "t1x_val_reactions"


@pytest.fixture(scope="session")
def horm_sample_path() -> Path:
    if not HORM_SAMPLE.exists():
        pytest.skip(f"shared HORM sample not found at {HORM_SAMPLE} (../shared is provided in CI)")
    return HORM_SAMPLE


@pytest.fixture(scope="session")
def t1x_dir() -> Path:
    if not T1X_DIR.is_dir():
        pytest.skip(f"shared T1x reactions not found at {T1X_DIR} (../shared is provided in CI)")
    return T1X_DIR


@pytest.fixture(scope="session")
def horm_samples(horm_sample_path):
    from horm.data.horm_lmdb import HormLmdb

    with HormLmdb(horm_sample_path) as ds:
        return list(ds)

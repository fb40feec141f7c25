"""Helpers shared by tests/test_hardening_outputs.py and tests/test_hardening_disk.py."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from horm.data.sample import Sample

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
HORM_SAMPLE = SHARED / "data" / "horm_sample_100.lmdb"
VICTIM = b"precious data\n"


def _cli(args):
    from typer.testing import CliRunner

    from horm.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def _victim(tmp_path) -> Path:
    v = tmp_path / "victim.txt"
    v.write_bytes(VICTIM)
    return v


def _h2(tmp_path) -> Path:
    p = tmp_path / "h2.xyz"
    p.write_text("2\nc\nH 0 0 0\nH 0 0 0.74\n")
    return p


def _samples(n: int, start: int = 0) -> list[Sample]:
    out = []
    for i in range(start, start + n):
        pos = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.74 + 0.001 * i]])
        out.append(Sample(numbers=np.array([1, 1]), pos=pos, energy=-1.0 - i, forces=np.zeros((2, 3)),
                          hessian=np.eye(6), key=f"s{i}"))
    return out


class ToyEngine:
    name, level_of_theory, settings = "toy", "toy level", {}

    def compute(self, sample, want=("energy", "forces", "hessian")):
        n = sample.natoms
        return sample.copy(energy=-1.0, forces=np.zeros((n, 3)), hessian=np.eye(3 * n))


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "256k"):
    """A tiny real file system to fill up; skips when mounting is not permitted."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    except OSError as exc:
        pytest.skip(f"cannot mount a tmpfs here (no mount: {exc})")
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({res.stderr.decode().strip()[:80]})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _fill(fs: Path, leave: int) -> None:
    """Fill ``fs`` until about ``leave`` bytes stay free."""
    free = os.statvfs(fs).f_bavail * os.statvfs(fs).f_frsize
    (fs / "fill").write_bytes(b"\0" * max(free - leave, 0))

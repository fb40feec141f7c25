"""xyz input: every kind of bad file gets a one-line error naming the file and frame."""

from __future__ import annotations

import numpy as np
import pytest

from horm.data.sample import Sample
from horm.data.xyz import read_reaction, read_xyz, write_extxyz, write_reaction, write_xyz
from horm.errors import DataError

WATER = "3\ncomment\nO 0 0 0\nH 0.96 0 0\nH -0.24 0.93 0\n"


def _bad(tmp_path, text, name="bad.xyz"):
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(DataError) as exc:
        read_xyz(p)
    msg = str(exc.value)
    assert name in msg and "\n" not in msg
    return msg


def test_plain_and_multiframe(tmp_path):
    p = tmp_path / "w.xyz"
    p.write_text(WATER + WATER.replace("0.93", "0.95"))
    fr = read_xyz(p)
    assert len(fr) == 2 and fr[1].pos[2, 1] == 0.95 and fr[0].symbols == ["O", "H", "H"]


@pytest.mark.parametrize("text,needle", [
    ("3\nc\nO 0 0 0\nXx 0.96 0 0\nH -0.24 0.93 0\n", "unknown element 'Xx'"),
    ("4\nc\nO 0 0 0\nH 0.96 0 0\nH -0.24 0.93 0\n", "says 4 atoms but only 3"),
    ("2\nc\nO 0 0 0\nH 0.96 0 0\nH -0.24 0.93 0\n", "more coordinate lines follow"),
    ("3\nc\nO 0 0 0\nH 0.96 abc 0\nH -0.24 0.93 0\n", "non-numeric coordinate"),
    ("3\nc\nO 0 0 0\nH nan 0 0\nH -0.24 0.93 0\n", "NaN or inf"),
    ("3\nc\nO 0 0 0\nH inf 0 0\nH -0.24 0.93 0\n", "NaN or inf"),
    ("3\nc\nO 0 0 0\nH 0.3 0 0\nH -0.24 0.93 0\n", "apart (< 0.5 Å)"),
    ("three\nc\nO 0 0 0\n", "expected an atom count"),
    ("", "no frames"),
])
def test_bad_xyz(tmp_path, text, needle):
    assert needle in _bad(tmp_path, text)


def test_error_names_the_frame(tmp_path):
    msg = _bad(tmp_path, WATER + WATER.replace("H -0.24", "Q -0.24"))
    assert "frame 1" in msg


def test_reaction_files(tmp_path, t1x_dir):
    r, p = read_reaction(sorted(t1x_dir.glob("*.xyz"))[0])
    assert r.natoms == p.natoms and np.array_equal(r.numbers, p.numbers) and r.rxn == p.rxn
    one = tmp_path / "one.xyz"
    one.write_text(WATER)
    with pytest.raises(DataError, match="exactly 2 frames"):
        read_reaction(one)
    swapped = tmp_path / "order.xyz"
    swapped.write_text(WATER + "3\nc\nH 0.96 0 0\nO 0 0 0\nH -0.24 0.93 0\n")
    with pytest.raises(DataError, match="atom order differs"):
        read_reaction(swapped)
    other = tmp_path / "elements.xyz"
    other.write_text(WATER + "3\nc\nO 0 0 0\nH 0.96 0 0\nF -0.24 0.93 0\n")
    with pytest.raises(DataError, match="different elements"):
        read_reaction(other)
    out = write_reaction(tmp_path / "rt.xyz", r, p)
    r2, p2 = read_reaction(out)
    assert np.allclose(r2.pos, r.pos, atol=1e-9) and np.allclose(p2.pos, p.pos, atol=1e-9)


def test_extxyz_labels_and_ase_roundtrip(tmp_path):
    rng = np.random.default_rng(1)
    s = Sample(numbers=np.array([8, 1, 1]), pos=np.array([[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]),
               energy=-2079.5, forces=rng.normal(size=(3, 3)), hessian=np.eye(9) * 3.0, charge=-1)
    write_extxyz(tmp_path / "l.extxyz", [s, s])
    back = read_xyz(tmp_path / "l.extxyz")
    assert len(back) == 2 and back[0].energy == pytest.approx(-2079.5)
    assert np.allclose(back[0].forces, s.forces) and np.allclose(back[0].hessian, s.hessian)
    assert back[0].charge == -1
    atoms = s.to_atoms()
    assert atoms.get_potential_energy() == pytest.approx(-2079.5)
    assert Sample.from_atoms(atoms).natoms == 3
    write_xyz(tmp_path / "p.xyz", [s])
    assert read_xyz(tmp_path / "p.xyz")[0].formula == "H2O"

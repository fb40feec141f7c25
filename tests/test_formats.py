"""ASE formats: export to extxyz/.traj/.db round-trips through ase.io and back into horm train;
MACE-style REF_* keys through --energy-key/--forces-key/--hessian-key; a store is never
written under an xyz-family or ASE extension; fine-tuning starts from the loaded model."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from horm.cli import app

BUNDLED = Path(__file__).resolve().parents[1] / "src" / "horm" / "datasets" / "t1x_xtb"
TINY = ["model.name=leftnet", "model.preset=tiny", "model.overrides.hidden_channels=8",
        "model.overrides.num_layers=1", "trainer.progress_bar=false", "trainer.batch_size=4"]


def _invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def store():
    from horm.data.io import open_dataset

    return open_dataset(BUNDLED / "val.hstore")


@pytest.mark.parametrize("suffix", [".extxyz", ".db", ".traj"])
def test_export_round_trips_through_ase(store, tmp_path, suffix):
    import ase.io

    dst = tmp_path / f"out{suffix}"
    res = _invoke("data", "export", BUNDLED / "val.hstore", dst)
    assert res.exit_code == 0, res.output
    frames = ase.io.read(str(dst), index=":")
    assert len(frames) == len(store)
    for k in (0, 57, len(store) - 1):
        s, a = store[k], frames[k]
        n = len(a)
        assert np.array_equal(a.numbers, s.numbers)
        assert a.get_potential_energy() == pytest.approx(s.energy, abs=1e-9)
        np.testing.assert_allclose(a.get_forces(), s.forces, atol=1e-7)
        flat = a.info["hessian"] if suffix != ".db" else a.info.get("data", {}).get("hessian")
        if flat is None:  # ase.io.read of a db row keeps data out of info: read it as ASE documents
            from ase.db import connect

            flat = connect(str(dst)).get(id=k + 1).data["hessian"]
        # flattened row-major over (atom, xyz): reshape gives the Hessian back, bit for bit
        np.testing.assert_array_equal(np.reshape(flat, (3 * n, 3 * n)), s.hessian)


def test_convert_to_extxyz_exports_and_label_refuses_an_xyz_store(tmp_path):
    import ase.io

    dst = tmp_path / "out.extxyz"
    res = _invoke("data", "convert", BUNDLED / "val.hstore", dst)
    assert res.exit_code == 0, res.output
    assert dst.read_bytes()[:4] != b"\x00\x00\x00\x00" and len(ase.io.read(str(dst), index=":")) == 192
    geo = tmp_path / "geo.xyz"
    geo.write_text("2\n\nH 0 0 0\nH 0 0 0.74\n")
    res = _invoke("label", geo, "--engine", "xtb", "-o", tmp_path / "lab.extxyz")
    assert res.exit_code == 2
    assert "never written as '.extxyz'" in " ".join(res.output.split()) and "Traceback" not in res.output
    assert not (tmp_path / "lab.extxyz").exists()
    from horm.data.store import HessianStore
    from horm.errors import UsageError

    for suffix in (".xyz", ".traj", ".db"):
        with pytest.raises(UsageError, match="never written"):
            HessianStore.create(tmp_path / f"s{suffix}", "x")


def _mace_file(store, path: Path, n: int = 24) -> Path:
    """A MACE-style extxyz: labels only under REF_energy, REF_forces, REF_hessian."""
    from ase.io import write

    frames = []
    for k in range(n):
        s = store[k]
        a = s.copy(energy=None, forces=None, hessian=None).to_atoms()
        a.info["REF_energy"] = s.energy
        a.arrays["REF_forces"] = np.asarray(s.forces)
        a.info["REF_hessian"] = np.asarray(s.hessian).reshape(-1)
        frames.append(a)
    write(str(path), frames, format="extxyz")
    return path


def test_mace_style_keys(store, tmp_path):
    from horm.data.formats import LabelKeys
    from horm.data.io import open_dataset
    from horm.errors import DataError

    f = _mace_file(store, tmp_path / "mace.extxyz", n=3)
    plain = open_dataset(f)
    assert plain[0].energy is None and "REF_energy" in plain.label_hint
    ds = open_dataset(f, LabelKeys("REF_energy", "REF_forces", "REF_hessian"))
    assert ds[1].energy == pytest.approx(store[1].energy)
    np.testing.assert_allclose(ds[1].forces, store[1].forces, atol=1e-7)
    np.testing.assert_allclose(ds[1].hessian, store[1].hessian, atol=1e-6)
    with pytest.raises(DataError) as exc:
        open_dataset(f, LabelKeys(energy="DFT_energy"))
    msg = str(exc.value)
    assert "DFT_energy" in msg and "REF_energy" in msg and "REF_forces" in msg and "\n" not in msg
    res = _invoke("data", "info", f, "--json", "--energy-key", "REF_energy", "--forces-key", "REF_forces",
                  "--hessian-key", "REF_hessian")
    info = json.loads(res.output)
    assert info["n_samples"] == 3 and {"energy", "forces", "hessian"} <= set(info["fields"])


def _val_losses(run: Path) -> list[tuple[int, float]]:
    rows = []
    for f in sorted((run / "logs").glob("version_*/metrics.csv")):
        with open(f) as fh:
            rows += [(int(r["step"]), float(r["val/loss"])) for r in csv.DictReader(fh) if r.get("val/loss")]
    return rows


def test_mace_file_trains_and_fine_tunes_from_the_model(store, tmp_path, monkeypatch):
    f = _mace_file(store, tmp_path / "mace.extxyz")
    keys = ["--energy-key", "REF_energy", "--forces-key", "REF_forces", "--hessian-key", "REF_hessian"]
    res = _invoke("train", *TINY, "trainer.max_steps=4", "trainer.val_every_n_steps=4", "--data", f, "--val", f,
                  "-o", tmp_path / "a")
    assert res.exit_code == 1 and "REF_energy" in res.output  # no key options: a DataError naming the keys found
    res = _invoke("train", *TINY, "trainer.max_steps=4", "trainer.val_every_n_steps=4", "--data", f, "--val", f,
                  "-o", tmp_path / "a", *keys)
    assert res.exit_code == 0, res.output
    last_a = _val_losses(tmp_path / "a")[-1]
    assert last_a[0] == 3  # validated after the last step: the weights model.pt holds
    monkeypatch.chdir(tmp_path)  # --init-from given relative to the working folder
    res = _invoke("train", *TINY, "trainer.max_steps=2", "optim.lr=1e-2", "--data", f, "--val", f,
                  "-o", tmp_path / "b", "--init-from", "a", *keys)
    assert res.exit_code == 0, res.output
    run_b = json.loads((tmp_path / "b" / "run.json").read_text())
    # the first validation of the fine-tuning run sees exactly the loaded model
    assert run_b["init_val_loss"] == pytest.approx(last_a[1], rel=1e-5)
    run_a = json.loads((tmp_path / "a" / "run.json").read_text())
    assert run_b["init_from"] == str((tmp_path / "a").resolve())  # absolute: the chain is found from anywhere
    from horm.pretrained import training_chain

    assert [c["steps"] for c in training_chain(tmp_path / "b")] == [run_a["global_step"], run_b["global_step"]]
    assert run_b["atom_ref"].keys() == run_a["atom_ref"].keys()
    for z, e in run_a["atom_ref"].items():  # loaded (float32 buffer), not refitted
        assert run_b["atom_ref"][z] == pytest.approx(e, rel=1e-6)

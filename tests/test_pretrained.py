"""Shipped models by name (horm.pretrained): every model-taking verb resolves the names, an
absent file is one line saying the model is not shipped, install records the file's hash."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import horm.pretrained as pre
from horm.cli import app
from horm.errors import DataError

NAME = "t1x-xtb-leftnet-efh"


@pytest.fixture
def pkg(tmp_path, monkeypatch):
    """A copy of the shipped-model folder with no model files in it."""
    d = tmp_path / "pretrained"
    d.mkdir()
    shutil.copy(pre.HERE / "manifest.json", d / "manifest.json")
    monkeypatch.setenv(pre.ENV, str(d))  # reaches worker processes too
    return d


def test_names_readme_and_list_first_column():
    assert pre.NAMES == ("t1x-xtb-leftnet-ef", "t1x-xtb-leftnet-efh", "t1x-xtb-leftnet-df-efh", "t1x-xtb-hessian-head")
    assert set(pre.manifest()["models"]) == set(pre.NAMES)
    assert [line.split()[0] for line in pre.list_lines()] == list(pre.NAMES)
    readme = (pre.HERE / "README.md").read_text()
    assert "GFN2-xTB-level surrogates trained on Transition1x geometries, not DFT models" in readme
    for entry in pre.manifest()["models"].values():  # each names a config that exists and trains that model
        from horm.train.config import TrainConfig

        cfg = TrainConfig.from_yaml(pre.HERE.parents[2] / entry["config"])
        assert (cfg.model.name, cfg.model.preset) == (entry["architecture"], "small")


def test_missing_file_is_one_line_in_every_verb(pkg, tmp_path):
    from horm.models.files import load_model
    from horm.calculators.potential import load_potential

    for call in (lambda: load_model(NAME), lambda: load_potential(NAME)):
        with pytest.raises(DataError, match="not shipped in this version"):
            call()
    from horm.datasets import bundled_split_path, bundled_test_reactions

    runs = [["ts", "run", str(bundled_test_reactions()[0]), "--potential", NAME, "--out", str(tmp_path / "ts")],
            ["evaluate", NAME, "--data", str(bundled_split_path("val")), "--out", str(tmp_path / "ev")]]
    for args in runs:
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 1, res.output  # a DataError: the file is not in this installation
        err = " ".join(res.output.split())
        assert "not shipped in this version" in err and "Traceback" not in err
    with pytest.raises(ValueError, match="shipped model"):
        load_potential("t1x-xtb-nonsense")


def test_installed_name_loads_everywhere(pkg, tmp_path):
    from horm.models.registry import build_model
    from horm.models.files import load_model, save_model
    from horm.calculators.potential import load_potential

    torch.manual_seed(0)
    model = build_model("leftnet", "tiny", hidden_channels=8, num_layers=1)
    model.set_atom_ref({1: -10.0, 6: -40.0, 7: -55.0, 8: -70.0})
    save_model(model, tmp_path / "run" / "model.pt")
    (tmp_path / "run" / "run.json").write_text(json.dumps({"global_step": 7, "wall_s": 1.0, "n_train": 3}))
    dst = pre.install(NAME, tmp_path / "run")
    entry = json.loads((pkg / "manifest.json").read_text())["models"][NAME]
    assert entry["sha256"] == hashlib.sha256(dst.read_bytes()).hexdigest() and entry["global_step"] == 7
    assert pre.available() == [NAME] and "shipped " in pre.list_lines()[1]
    # a warm restart of that run: steps and wall time are summed over the chain
    shutil.copytree(tmp_path / "run", tmp_path / "run2")
    (tmp_path / "run2" / "run.json").write_text(json.dumps({"global_step": 5, "wall_s": 2.5, "n_train": 3,
                                                            "init_from": str(tmp_path / "run" / "model.pt")}))
    pre.install(NAME, tmp_path / "run2")
    entry = json.loads((pkg / "manifest.json").read_text())["models"][NAME]
    assert (entry["global_step"], entry["wall_s"]) == (12, 3.5)
    assert entry["training_runs"] == [{"steps": 7, "wall_s": 1.0}, {"steps": 5, "wall_s": 2.5}]
    loaded, info = load_model(NAME)
    assert info["path"] == str(dst)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    from ase.build import molecule

    atoms = molecule("CH3OH")
    atoms.calc = load_potential(NAME)
    e_name = atoms.get_potential_energy()
    atoms.calc = load_potential(str(dst))
    assert np.isclose(e_name, atoms.get_potential_energy(), atol=1e-10)
    from horm.datasets import bundled_split_path

    res = CliRunner().invoke(app, ["evaluate", NAME, "--data", str(bundled_split_path("val")), "--out",
                                   str(tmp_path / "ev"), "--max-samples", "2", "--no-hessian"])
    assert res.exit_code == 0, res.output
    assert NAME in (tmp_path / "ev" / "table1.md").read_text()


def test_horm_model_list_starts_with_the_shipped_names():
    res = CliRunner().invoke(app, ["model", "list"])
    assert res.exit_code == 0, res.output
    first = [line.split()[0] for line in res.output.splitlines() if line.strip()]
    assert first[:4] == list(pre.NAMES) and "leftnet" in first[4:]

"""A released HORM checkpoint is accepted wherever a model is: ``horm.load_model``, ``horm model
info|import``, ``horm evaluate`` and ``horm ts run`` (issue 14, "Done means").

The checkpoint is assembled in HORM's Lightning layout from the small AlphaNet fixture weights
(``../shared/reference/horm_models``); the weights are random, so only the plumbing and the
numbers' agreement with the direct loader are judged, not the TS outcome.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from _lightning_ckpt import save_lightning_checkpoint
from test_published_checkpoint import _published, _saved_hparams

import horm
from horm.cli import app
from horm.data.batch import collate
from horm.data.sample import Sample
from horm.datasets import bundled_test_reactions
from horm.models.published.checkpoint import load_published_checkpoint

runner = CliRunner(env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def alpha_ckpt(tmp_path_factory):
    _name, manifest, small, weights, ref = _published("AlphaNet")
    path = tmp_path_factory.mktemp("ckpt") / "alpha.ckpt"
    return save_lightning_checkpoint(path, weights, _saved_hparams("AlphaNet", manifest, small)), ref


def _energy_forces(model, ref):
    batch = collate([Sample(numbers=ref["mol0_z"], pos=ref["mol0_pos"].astype(np.float64))], dtype=torch.float32)
    out = model(batch, create_graph=False)
    return float(out["energy"][0]), out["forces"].numpy()


def test_load_model_and_model_info_recognise_the_checkpoint(alpha_ckpt):
    path, ref = alpha_ckpt
    model, info = horm.load_model(path)
    assert info["architecture"] == "horm-alphanet" and info["level_of_theory"] == "ωB97X/6-31G(d)"
    direct, _ = load_published_checkpoint(path)
    e1, f1 = _energy_forces(model, ref)
    e2, f2 = _energy_forces(direct, ref)
    assert e1 == e2 and np.array_equal(f1, f2)
    res = runner.invoke(app, ["model", "info", str(path)])
    assert res.exit_code == 0, res.output
    assert "horm-alphanet" in res.output and "H C N O" in res.output


def test_model_import_writes_a_model_file_with_the_same_predictions(alpha_ckpt, tmp_path):
    path, ref = alpha_ckpt
    out = tmp_path / "alpha.pt"
    res = runner.invoke(app, ["model", "import", str(path), str(out)])
    assert res.exit_code == 0, res.output
    imported, info = horm.load_model(out)
    assert info["meta"]["level_of_theory"] == "ωB97X/6-31G(d)"
    direct, _ = load_published_checkpoint(path)
    e1, f1 = _energy_forces(imported, ref)
    e2, f2 = _energy_forces(direct, ref)
    assert e1 == e2 and np.array_equal(f1, f2)
    again = runner.invoke(app, ["model", "import", str(path), str(out)])  # never overwrites silently
    assert again.exit_code == 2 and "--force" in again.output
    bad = runner.invoke(app, ["model", "import", str(path), str(tmp_path / "b.pt"), "--atom-refs", "H"])
    assert bad.exit_code == 2 and "SYMBOL=eV" in bad.output and not (tmp_path / "b.pt").exists()


def test_evaluate_and_ts_run_take_the_checkpoint(alpha_ckpt, tmp_path, horm_sample_path):
    path, _ = alpha_ckpt
    res = runner.invoke(app, ["evaluate", str(path), "--data", str(horm_sample_path), "-o", str(tmp_path / "ev"),
                              "--max-samples", "4"])
    assert res.exit_code == 0, res.output
    assert "Hessian MAE" in (tmp_path / "ev" / "report.md").read_text()
    rxn = bundled_test_reactions()[0]
    res = runner.invoke(app, ["ts", "run", str(rxn), "--potential", str(path), "-o", str(tmp_path / "ts"),
                              "--path-method", "none", "--interpolation", "linear", "--ts-steps", "3"])
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / "ts" / "record.json").read_text())
    assert record["status"] == "done" and record["potential"] == str(path)
    assert record["stages"]["tsopt"]["steps"] >= 1

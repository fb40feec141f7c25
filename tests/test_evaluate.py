"""Evaluation metrics checked by hand on known matrices, and `horm evaluate` end to end."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from horm.cli import app
from horm.evaluate.metrics import asymmetry, evaluate_model, hessian_metrics, summarise
from horm.hessian.analysis import vibrational_analysis
from horm.models.registry import build_model
from horm.models.files import load_model, save_model

# water-like geometry (Å) and a positive-definite internal Hessian built from random modes
POS = np.array([[0.0, 0.0, 0.117], [0.0, 0.757, -0.469], [0.0, -0.757, -0.469]])
Z = np.array([8, 1, 1])


def _pd_hessian(rng, n3=9):
    a = rng.normal(size=(n3, n3))
    return a @ a.T + 0.5 * np.eye(n3)


def test_asymmetry_of_a_known_matrix():
    h = np.array([[1.0, 2.0], [0.0, 1.0]])
    a_abs, a_rel = asymmetry(h)
    assert a_abs == pytest.approx(1.0)  # |H − Hᵀ| = [[0, 2], [2, 0]], mean 1
    assert a_rel == pytest.approx(math.sqrt(8.0 / 6.0))  # ‖D‖_F = √8, ‖H‖_F = √6
    assert asymmetry(np.eye(3)) == (0.0, 0.0)


def test_hessian_metrics_by_hand():
    rng = np.random.default_rng(0)
    h = _pd_hessian(rng)
    same = hessian_metrics(h, h, POS, Z)
    assert same["hessian_mae"] == 0 and same["eigval_mae"] == pytest.approx(0, abs=1e-12)
    assert same["cos_mode1"] == pytest.approx(1.0) and same["n_neg_agree"] == 1.0
    assert same["freq_mae"] == pytest.approx(0, abs=1e-9)
    # a shift c·I moves every Cartesian eigenvalue by c and 3N of the (3N)² entries by c
    c = 0.7
    sh = hessian_metrics(h + c * np.eye(9), h, POS, Z)
    assert sh["eigval_mae"] == pytest.approx(c) and sh["lambda1_mae"] == pytest.approx(c)
    assert sh["hessian_mae"] == pytest.approx(9 * c / 81)
    assert sh["asym_mae"] == 0.0
    # 4·H doubles every harmonic frequency (ν ∝ √λ), so the frequency MAE is the mean |ν|
    freqs, _ = vibrational_analysis(h, POS, Z)
    assert np.all(freqs > 0)
    q = hessian_metrics(4 * h, h, POS, Z)
    assert q["freq_mae"] == pytest.approx(np.abs(freqs).mean(), rel=1e-9)
    assert q["cos_mode1"] == pytest.approx(1.0)
    # −H: every internal mode becomes imaginary, the counts disagree
    neg = hessian_metrics(-h, h, POS, Z)
    assert neg["n_neg_pred"] == len(freqs) and neg["n_neg_ref"] == 0 and neg["n_neg_agree"] == 0.0


def test_summarise_mean_median_and_nan():
    s = summarise({"energy_mae": np.array([1.0, 2.0, 9.0, np.nan])})
    assert s["energy_mae"] == {"mean": 4.0, "median": 2.0, "n": 3}


def test_horm_evaluate_side_by_side(horm_sample_path, tmp_path):
    from horm.data.horm_lmdb import HormLmdb

    paths = []
    for name in ("leftnet", "leftnet-df"):
        torch.manual_seed(0)
        m = build_model(name, "tiny", hidden_channels=16, num_layers=1)
        m.set_atom_ref({1: -16.7, 6: -1035.5, 7: -1489.1, 8: -2046.2})
        paths.append(save_model(m, tmp_path / name / "model.pt"))
    out = tmp_path / "eval"
    res = CliRunner().invoke(app, ["evaluate", *map(str, paths), "--data", str(horm_sample_path), "--out", str(out),
                                   "--max-samples", "3", "--batch-size", "2"])
    assert res.exit_code == 0, res.output
    for f in ("table1.md", "table1.csv", "table2.md", "tableA1.csv", "radar.png", "parity_leftnet.png",
              "parity_leftnet-df.png"):
        assert (out / f).is_file(), f
    with open(out / "table1.csv") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["metric", "unit", "stat", "leftnet", "leftnet-df"]
    # the energy MAE column equals a direct computation with the loaded model
    model, _ = load_model(paths[0])
    with HormLmdb(horm_sample_path) as ds:
        samples = [ds[i] for i in range(3)]
    emae = np.mean([abs(e - s.energy) for e, s in zip(_energies(model, samples), samples)])
    metrics, _ = evaluate_model(model, samples, batch_size=3)
    assert metrics["energy_mae"].mean() == pytest.approx(emae, rel=1e-6)
    row = next(r for r in rows if r[0] == "Energy MAE" and r[2] == "mean")
    assert float(row[3]) == pytest.approx(emae, rel=1e-6)  # CSVs hold full precision (the Markdown rounds)
    assert row[1] == "eV"
    with open(out / "per_molecule_leftnet.csv") as fh:
        per = list(csv.DictReader(fh))
    # one row per molecule, named by its sample key, energy error at full precision
    assert [r["key"] for r in per] == [s.key for s in samples] and all(s.key for s in samples)
    direct = [abs(e - s.energy) for e, s in zip(_energies(model, samples), samples)]
    assert [float(r["energy_mae [eV]"]) for r in per] == pytest.approx(direct, rel=1e-6)
    with open(out / "tableA1.csv") as fh:
        asym = {r[2]: r for r in csv.reader(fh) if r[0].startswith("Asymmetry")}
    # autograd Hessians are symmetric to round-off; the direct-force Jacobian is not
    assert float(asym["mean"][3]) < 1e-4 < float(asym["mean"][4])


def _energies(model, samples):
    from horm.data.batch import collate

    with torch.enable_grad():
        out = model(collate(samples), compute_forces=False, create_graph=False)
    return out["energy"].double().numpy()


def test_spread_subset_covers_the_file_and_evaluates_those_samples(horm_sample_path):
    """--spread takes N samples evenly over a file ordered by reaction (first and last included),
    and the evaluation's rows are those samples."""
    from horm.data.horm_lmdb import HormLmdb
    from horm.evaluate.metrics import sample_indices

    assert sample_indices(10, 3) == [0, 1, 2]
    assert sample_indices(10, 3, spread=True) == [0, 4, 9]
    assert sample_indices(10, None, spread=True) == list(range(10))
    assert sample_indices(4, 9, spread=True) == [0, 1, 2, 3]
    torch.manual_seed(0)
    m = build_model("leftnet", "tiny", hidden_channels=16, num_layers=1)
    with HormLmdb(horm_sample_path) as ds:
        metrics, pr = evaluate_model(m, ds, batch_size=2, max_samples=4, spread=True, hessian=False)
        idx = sample_indices(len(ds), 4, spread=True)
        assert idx[0] == 0 and idx[-1] == len(ds) - 1 and len(idx) == 4
        want = [ds[i] for i in idx]
    assert len(metrics["energy_mae"]) == 4
    np.testing.assert_allclose(pr.energy_ref, [s.energy for s in want])

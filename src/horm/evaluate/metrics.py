"""Per-molecule evaluation metrics of a potential against labelled data (Tables 1, 2, A.1).

Every metric is computed per molecule, then summarised over molecules by its mean and its
median (:func:`summarise`). Definitions (Ĥ predicted, H reference, both (3N, 3N) eV/Å²):

==================  ==========  =============================================================
column              unit        definition
==================  ==========  =============================================================
energy_mae          eV          |Ê − E| (total energies)
forces_mae          eV/Å        mean over the 3N components of |F̂ − F|
hessian_mae         eV/Å²       mean over the (3N)² entries of |Ĥ − H| (Ĥ as predicted, not symmetrised)
eigval_mae          eV/Å²       mean over the 3N eigenvalues of |λ̂_i − λ_i|, plain Cartesian eigenvalues
                                (ascending) of the symmetrised ½(Ĥ + Ĥᵀ) and of ½(H + Hᵀ); no mass
                                weighting, no projection
lambda1_mae         eV/Å²       |λ̂_1 − λ_1|, the lowest Cartesian eigenvalues
asym_mae            eV/Å²       mean over entries of |Ĥ − Ĥᵀ| (Eq. A.1)
asym_rel            1           ‖Ĥ − Ĥᵀ‖_F / ‖Ĥ‖_F (a near-zero Jacobian makes asym_mae look good)
freq_mae            cm⁻¹        mean |ν̂_i − ν_i| over the 3N−6 (3N−5) harmonic frequencies of the
                                mass-weighted, Eckart-projected Hessians (imaginary as negative)
freq1_mae           cm⁻¹        |ν̂_1 − ν_1|, the lowest frequencies
cos_mode1           1           |cos| between the lowest normal modes (mass-weighted, Eckart-projected)
n_neg_agree         1 (0 or 1)  1 if the numbers of negative eigenvalues (imaginary modes below
                                −10 cm⁻¹, projected) agree
n_neg_pred, n_neg_ref   1       those numbers
==================  ==========  =============================================================

Full predicted Hessians come from the batched path (c) of :mod:`horm.hessian.autograd`
(each one-hot VJP selects row k of every molecule in the batch).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from horm.data.batch import Collater, hessian_blocks
from horm.hessian.analysis import cartesian_eigenvalues, n_imaginary, vibrational_analysis
from horm.units import UNITS as QUANTITY_UNITS

_E, _F, _H, _NU = (QUANTITY_UNITS[k] for k in ("energy", "forces", "hessian", "frequency"))
UNITS: dict[str, str] = {  # each metric's unit, from horm.units
    "energy_mae": _E, "forces_mae": _F, "hessian_mae": _H, "eigval_mae": _H, "lambda1_mae": _H, "asym_mae": _H,
    "asym_rel": "1", "freq_mae": _NU, "freq1_mae": _NU, "cos_mode1": "1", "n_neg_agree": "1", "n_neg_pred": "1",
    "n_neg_ref": "1",
}
HIGHER_IS_BETTER = {"cos_mode1", "n_neg_agree"}


def asymmetry(h: np.ndarray) -> tuple[float, float]:
    """(mean |H − Hᵀ| in H's unit (Eq. A.1), ‖H − Hᵀ‖_F / ‖H‖_F)."""
    h = np.asarray(h, dtype=np.float64)
    d = h - h.T
    norm = np.linalg.norm(h)
    return float(np.abs(d).mean()), float(np.linalg.norm(d) / norm) if norm > 0 else 0.0


def hessian_metrics(h_pred: np.ndarray, h_ref: np.ndarray, pos: np.ndarray, numbers) -> dict[str, float]:
    """Hessian, eigenvalue, asymmetry and frequency metrics of one molecule (see the table above)."""
    hp = np.asarray(h_pred, dtype=np.float64)
    hr = np.asarray(h_ref, dtype=np.float64)
    lp, lr = cartesian_eigenvalues(hp), cartesian_eigenvalues(hr)
    a_abs, a_rel = asymmetry(hp)
    fp, mp = vibrational_analysis(hp, pos, numbers)
    fr, mr = vibrational_analysis(hr, pos, numbers)
    out = {"hessian_mae": float(np.abs(hp - hr).mean()), "eigval_mae": float(np.abs(lp - lr).mean()),
           "lambda1_mae": float(abs(lp[0] - lr[0])), "asym_mae": a_abs, "asym_rel": a_rel}
    if len(fr):
        npred, nref = n_imaginary(fp), n_imaginary(fr)
        out.update({"freq_mae": float(np.abs(fp - fr).mean()), "freq1_mae": float(abs(fp[0] - fr[0])),
                    "cos_mode1": float(abs(mp[:, 0] @ mr[:, 0]) / (np.linalg.norm(mp[:, 0]) * np.linalg.norm(mr[:, 0]))),
                    "n_neg_pred": float(npred), "n_neg_ref": float(nref), "n_neg_agree": float(npred == nref)})
    return out


@dataclass
class Predictions:
    """Per-molecule predictions and labels kept for parity plots (numpy, eV / eV/Å / eV/Å²)."""

    energy: list
    energy_ref: list
    ref_offset: list  # Σ atom_ref[Z] of each molecule, eV (to plot referenced energies)
    forces: list
    forces_ref: list
    hessian: list
    hessian_ref: list
    eig: list
    eig_ref: list
    keys: list = field(default_factory=list)  # sample key per molecule (``#index`` when the data has none)


def sample_indices(n_total: int, max_samples: int | None = None, spread: bool = False) -> list[int]:
    """Which samples an evaluation takes: all, the first ``max_samples``, or (``spread``)
    ``max_samples`` evenly spaced over the file, so that a file ordered by reaction is covered
    end to end."""
    n = n_total if max_samples is None else max(0, min(n_total, max_samples))
    if not spread or n >= n_total:
        return list(range(n))
    return sorted({int(i) for i in np.linspace(0, n_total - 1, n).round()})


def evaluate_model(model, dataset, batch_size: int = 8, hessian: bool = True, max_samples: int | None = None,
                   progress=None, spread: bool = False, indices: list[int] | None = None
                   ) -> tuple[dict[str, np.ndarray], Predictions]:
    """Run ``model`` over ``dataset`` (indexable of Samples); per-molecule metrics and predictions.

    Returns ``(metrics, preds)``: ``metrics[name]`` is an array over molecules (NaN where a
    metric does not apply, e.g. no Hessian label). ``progress(n_done, n_total)`` is called per batch.
    ``max_samples``/``spread``: see :func:`sample_indices`; ``indices``, when given, replaces them.
    """
    model.eval()
    dtype = next(model.parameters()).dtype
    device = next(model.parameters()).device
    idx = sample_indices(len(dataset), max_samples, spread) if indices is None else list(indices)
    n = len(idx)
    collate = Collater(dtype)
    rows: list[dict[str, float]] = []
    pr = Predictions(*([] for _ in range(9)))
    for lo in range(0, n, batch_size):
        samples = [dataset[i] for i in idx[lo:lo + batch_size]]
        batch = collate(samples).to(device)
        want_h = hessian and batch.hessian is not None
        with torch.enable_grad():
            out = model(batch, compute_forces=True, compute_hessian=want_h, create_graph=False,
                        hessian_method="batched")
        e = out["energy"].detach().double().cpu().numpy()
        ref_e = model.reference_energy(batch).detach().double().cpu().numpy()
        f = out["forces"].detach().double().cpu().numpy()
        ptr = batch.ptr.tolist()
        hp = [h.detach().double().cpu().numpy() for h in hessian_blocks(out["hessian"], batch.hess_ptr, batch.natoms)] \
            if want_h else None
        for b, s in enumerate(samples):
            r: dict[str, float] = {}
            fb = f[ptr[b]:ptr[b + 1]]
            pr.keys.append(s.key or f"#{idx[lo + b]}")
            pr.energy.append(float(e[b]))
            pr.ref_offset.append(float(ref_e[b]))
            pr.forces.append(fb)
            pr.energy_ref.append(float(s.energy) if s.energy is not None else np.nan)
            pr.forces_ref.append(np.asarray(s.forces, dtype=np.float64) if s.forces is not None else None)
            if s.energy is not None:
                r["energy_mae"] = abs(float(e[b]) - float(s.energy))
            if s.forces is not None:
                r["forces_mae"] = float(np.abs(fb - np.asarray(s.forces, dtype=np.float64)).mean())
            if hp is not None:
                href = np.asarray(s.hessian, dtype=np.float64).reshape(hp[b].shape)
                r.update(hessian_metrics(hp[b], href, np.asarray(s.pos, dtype=np.float64), s.numbers))
                pr.hessian.append(hp[b])
                pr.hessian_ref.append(href)
                pr.eig.append(cartesian_eigenvalues(hp[b]))
                pr.eig_ref.append(cartesian_eigenvalues(href))
            rows.append(r)
        if progress is not None:
            progress(min(n, lo + batch_size), n)
    names = list(UNITS)
    metrics = {k: np.array([r.get(k, np.nan) for r in rows], dtype=np.float64) for k in names}
    return metrics, pr


def dropped_values(metrics: dict[str, np.ndarray], pr: Predictions) -> dict[str, int]:
    """Per metric, how many molecules that have the label got a non-finite value (a NaN or inf
    prediction): :func:`summarise` leaves them out of the means, so they must be reported."""
    has = {"energy_mae": np.isfinite(np.asarray(pr.energy_ref, dtype=np.float64)),
           "forces_mae": np.array([f is not None for f in pr.forces_ref], dtype=bool)}
    if pr.hessian and len(pr.hessian) == len(pr.energy):
        has["hessian_mae"] = np.ones(len(pr.energy), dtype=bool)
    out = {k: int((~np.isfinite(metrics[k]) & m).sum()) for k, m in has.items() if len(m) == len(metrics[k])}
    return {k: v for k, v in out.items() if v}


def summarise(metrics: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """name -> {"mean", "median", "n"} over molecules (NaNs ignored)."""
    out = {}
    for k, v in metrics.items():
        v = v[np.isfinite(v)]
        out[k] = {"mean": float(v.mean()) if v.size else float("nan"),
                  "median": float(np.median(v)) if v.size else float("nan"), "n": int(v.size)}
    return out

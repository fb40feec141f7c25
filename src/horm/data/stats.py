"""Dataset summaries: ``horm data info`` and the Fig. 1 panels of ``horm data stats``.

Fig. 1 of the HORM paper shows, per dataset, the distribution of (a) the number of atoms,
(b) the energy referenced to per-element atomic energies, and (c) the number of
imaginary frequencies (Eckart-projected, below −10 cm⁻¹). We draw the same three panels.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase.data import chemical_symbols

from horm.data.refs import fit_atom_references, referenced_energy
from horm.hessian.analysis import frequencies, n_imaginary
from horm.units import UNITS


@dataclass
class DatasetInfo:
    path: str
    n_samples: int
    natoms_min: int
    natoms_max: int
    natoms_mean: float
    elements: list[str]
    fields: list[str]
    units: dict[str, str]
    level_of_theory: str
    n_reactions: int
    n_failures: int = 0
    origins: dict[str, int] = field(default_factory=dict)
    n_read: int = 0  # samples read for the other fields (all of them, or a seeded sample)


INFO_SAMPLE = 1000  # samples ``horm data info`` reads without --full


def _positions(n: int, sample: int | None) -> np.ndarray:
    if sample is None or n <= sample:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, sample, replace=False))


def dataset_info(ds, path: str, level: str, sample: int | None = None, progress=None) -> DatasetInfo:
    """Summary of ``ds``: the sample count is the file's own; the other fields come from every
    sample (``sample=None``) or from a seeded sample of that many (then they are estimates: atom
    range, elements, fields and origins as seen, reactions as a lower bound). ``progress``:
    :data:`horm.progress.ProgressStart`."""
    nat, els, fields, rxns, origins = [], set(), Counter(), set(), Counter()
    positions = _positions(len(ds), sample)
    advance = progress("reading every sample", len(positions)) if progress is not None else None
    for i in positions.tolist():
        s = ds[i]
        if advance is not None:
            advance()
        nat.append(s.natoms)
        els.update(int(z) for z in s.numbers)
        for f in ("energy", "forces", "hessian"):
            if getattr(s, f) is not None:
                fields[f] += 1
        for k in s.extras:
            fields[k] += 1
        if s.rxn:
            rxns.add(s.rxn)
        origins[s.origin.split(":")[0] if s.origin else "?"] += 1
    n = len(nat)
    meta = getattr(ds, "meta", {}) or {}
    return DatasetInfo(
        path=path,
        n_samples=len(ds),
        n_read=n,
        natoms_min=min(nat) if nat else 0,
        natoms_max=max(nat) if nat else 0,
        natoms_mean=float(np.mean(nat)) if nat else 0.0,
        elements=[chemical_symbols[z] for z in sorted(els)],
        fields=["numbers", "pos"] + [f"{k} ({v}/{n})" if v != n else k for k, v in fields.items()],
        units=dict(UNITS),
        level_of_theory=level,
        n_reactions=len(rxns),
        n_failures=int(meta.get("n_failures", 0)),
        origins=dict(origins),
    )


def fig1_quantities(samples, imaginary: bool = True) -> dict[str, np.ndarray]:
    """Per-sample natoms, referenced energy (eV) and number of imaginary frequencies.

    One streaming pass over ``samples``: only per-sample numbers are kept, never the
    samples. The imaginary-mode count needs a frequency analysis of every Hessian (each
    decoded once, by the dataset, and dropped after it); ``imaginary=False`` skips that
    analysis (the datasets still decode the Hessian when they read a record).
    """
    nat, numbers, energies, n_imag = [], [], [], []
    for s in samples:
        nat.append(s.natoms)
        if s.energy is not None:
            numbers.append(np.asarray(s.numbers))
            energies.append(float(s.energy))
        if imaginary and s.hessian is not None:
            n_imag.append(n_imaginary(frequencies(s.hessian, s.pos, s.numbers)))
    out = {"natoms": np.array(nat)}
    if energies:
        refs = fit_atom_references(numbers, energies)
        out["ref_energy"] = np.array([referenced_energy(z, e, refs) for z, e in zip(numbers, energies)])
        out["atom_refs"] = refs
    if n_imag:
        out["n_imag"] = np.array(n_imag)
    return out


def fig1_line(name: str, q: dict) -> str:
    """One line per dataset: sample count and the imaginary-mode histogram."""
    msg = f"{name}: {len(q['natoms'])} samples"
    if "n_imag" in q:
        counts = np.bincount(q["n_imag"])
        msg += ", imaginary-mode counts " + ", ".join(f"{k}: {c}" for k, c in enumerate(counts) if c)
    return msg


def fig1_report(paths, out_dir: str | Path) -> list[str]:
    """Fig. 1 for datasets on disk: one streaming pass each, the PNG panels in ``out_dir``;
    returns the lines to print (one per dataset, one per PNG)."""
    from horm.data.io import open_dataset

    paths = [Path(p) for p in paths]
    series = {p.stem: fig1_quantities(open_dataset(p)) for p in paths}
    lines = [fig1_line(str(p), series[p.stem]) for p in paths]
    return lines + [f"wrote {f}" for f in plot_fig1(series, out_dir)]


def plot_fig1(datasets: dict[str, dict], out_dir: str | Path) -> list[Path]:
    """Write fig1_natoms.png, fig1_energy.png, fig1_nimag.png (one series per dataset)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    panels = [
        ("natoms", "Number of atoms", "fig1_natoms.png", "int"),
        ("ref_energy", "Energy − Σ atomic references (eV)", "fig1_energy.png", "float"),
        ("n_imag", "Number of imaginary frequencies (< −10 cm⁻¹)", "fig1_nimag.png", "int"),
    ]
    for key, xlabel, fname, kind in panels:
        series = {name: q[key] for name, q in datasets.items() if key in q and len(q[key])}
        if not series:
            continue
        fig, ax = plt.subplots(figsize=(5, 3.6), dpi=120)
        for name, v in series.items():
            v = np.asarray(v)
            if kind == "int":
                lo, hi = int(v.min()), int(v.max())
                bins = np.arange(lo - 0.5, hi + 1.5, 1)
            else:
                bins = 30
            ax.hist(v, bins=bins, alpha=0.6, label=f"{name} (n={len(v)})", density=True)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("fraction of samples")
        ax.legend(frameon=False, fontsize=8)
        ax.set_title(xlabel.split(" (")[0])
        fig.tight_layout()
        p = out / fname
        fig.savefig(p)
        plt.close(fig)
        written.append(p)
    return written

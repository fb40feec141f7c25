"""The bundled t1x_xtb set: present, labelled, split by reaction, test reactions held out."""

from __future__ import annotations

import json

import numpy as np
import pytest

from horm.datasets import bundled_path, bundled_test_reactions, load_bundled


@pytest.fixture(scope="module")
def splits():
    out = {}
    for name in ("train", "val", "ood"):
        with load_bundled(name) as st:
            out[name] = (dict(st.meta), list(st))
    return out


def test_splits_are_labelled_and_disjoint_by_reaction(splits):
    manifest = json.loads((bundled_path() / "manifest.json").read_text())
    rxns = {}
    for name, (meta, samples) in splits.items():
        assert meta["level_of_theory"].startswith("GFN2-xTB")
        assert len(samples) == manifest["counts"][name]["samples"]
        assert all(s.energy is not None and s.forces is not None and s.hessian is not None for s in samples)
        assert all(s.hessian.shape == (3 * s.natoms,) * 2 for s in samples)
        assert len({s.key for s in samples}) == len(samples)
        rxns[name] = {s.rxn for s in samples}
    assert len(splits["train"][1]) >= 1000
    assert not (rxns["train"] & rxns["val"]) and not (rxns["ood"] & (rxns["train"] | rxns["val"]))
    held_out = {p.stem for p in bundled_test_reactions()}
    assert 6 <= len(held_out) <= 10
    assert not held_out & (rxns["train"] | rxns["val"] | rxns["ood"])
    # OOD is the RGD1 role: larger molecules, IRC points
    assert min(s.natoms for s in splits["ood"][1]) > max(s.natoms for s in splits["train"][1])
    assert {s.origin.split(":")[0] for s in splits["ood"][1]} <= {"ts", "tsopt", "irc"}


def test_forces_are_minus_the_energy_gradient_along_a_reaction(splits):
    """Two consecutive NEB images of one band: ΔE ≈ −½(F₁+F₂)·Δr (trapezoid), at xTB level."""
    by_rxn = {}
    for s in splits["train"][1]:
        if s.origin.startswith("neb:final:img"):
            by_rxn.setdefault(s.rxn, {})[int(s.origin.rsplit("img", 1)[1])] = s
    errs = []
    for band in list(by_rxn.values())[:10]:
        for k in sorted(band)[:-1]:
            if k + 1 in band:
                a, b = band[k], band[k + 1]
                dr = b.pos - a.pos
                de_pred = -0.5 * np.sum((a.forces + b.forces) * dr)
                errs.append(abs((b.energy - a.energy) - de_pred) / max(abs(b.energy - a.energy), 0.05))
    assert errs and np.median(errs) < 0.2, np.median(errs)

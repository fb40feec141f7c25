"""Helpers for the published-EquiformerV2 tests: fixture loading, strict build, the 4-molecule batch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import SHARED
from horm.data.batch import collate
from horm.data.sample import Sample
from horm.models.registry import build_model_from_config, list_models
from horm.models.published import FORMATS

REF = SHARED / "reference" / "horm_models"
MOLS = range(4)


def fixture_dir(model: str):
    d = REF / model
    if not (d / "small" / "reference.npz").exists():
        pytest.skip(f"published-model fixtures not found at {d} (../shared is provided in CI)")
    return d


def manifest_keys(model: str) -> dict[str, tuple[int, ...]]:
    man = json.loads((fixture_dir(model) / "manifest_full.json").read_text())
    return {e["key"].removeprefix("potential."): tuple(e["shape"]) for e in man["state_dict"]}


def small_weights(model: str) -> dict[str, torch.Tensor]:
    from safetensors.numpy import load_file

    w = load_file(str(fixture_dir(model) / "small" / "weights.safetensors"))
    return {k.removeprefix("potential."): torch.from_numpy(v) for k, v in w.items()}


def reference(model: str):
    return np.load(fixture_dir(model) / "small" / "reference.npz", allow_pickle=False)


def load_small(model: str, name: str, dtype: torch.dtype):
    """The small fixture model through its CheckpointFormat, strict load, eval, in ``dtype``."""
    list_models()
    w = small_weights(model)
    fmts = [f for f in FORMATS if f.recognise(None, w)]
    assert [f.model for f in fmts] == [name]
    m = build_model_from_config(fmts[0].config(None, w))
    m.load_state_dict({**w, "atom_ref": m.atom_ref}, strict=True)
    return m.eval().to(dtype)


def four_molecules(ref, dtype: torch.dtype, head_rolls: bool = False, mols=MOLS):
    """One batch of the fixture molecules and the recorded rolls of run A, concatenated in edge order."""
    b = collate([Sample(numbers=ref[f"mol{k}_z"], pos=ref[f"mol{k}_pos"].astype(np.float64)) for k in mols],
                dtype=dtype)
    main = torch.cat([torch.from_numpy(ref[f"mol{k}_edge_rand_A"]) for k in mols])
    hess = torch.cat([torch.from_numpy(ref[f"mol{k}_edge_rand_hessian_A"]) for k in mols]) if head_rolls else None
    return b, main, hess


def max_rel(pred: torch.Tensor, ref_arr: np.ndarray) -> float:
    p = pred.detach().double().numpy().reshape(ref_arr.shape)
    return float(np.abs(p - ref_arr).max() / np.abs(ref_arr).max())


def split(out: dict, batch) -> list[dict[str, torch.Tensor]]:
    """Per-molecule energy, forces and (3n, 3n) Hessian from a batched output."""
    res = []
    for k in range(batch.num_graphs):
        lo, hi = int(batch.ptr[k]), int(batch.ptr[k + 1])
        d = {"energy": out["energy"][k], "forces": out["forces"][lo:hi]}
        if "hessian" in out:
            h0, h1 = int(out["hess_ptr"][k]), int(out["hess_ptr"][k + 1])
            d["hessian"] = out["hessian"][h0:h1].reshape(3 * (hi - lo), 3 * (hi - lo))
        res.append(d)
    return res


def autograd_hessian_deviation(model, ref, dtype: torch.dtype, mols, head_rolls: bool = False) -> float:
    """Worst max-relative deviation of the autograd Hessian from ``mol{k}_f64_A_hessian``, one molecule at a time."""
    worst = 0.0
    for k in mols:
        b, main, hess = four_molecules(ref, dtype, head_rolls=head_rolls, mols=[k])
        model.replay_rolls(main, hess)
        h = model(b, compute_hessian=True, create_graph=False)["hessian"]
        worst = max(worst, max_rel(h, ref[f"mol{k}_f64_A_hessian"]))
    return worst


def check_within(name: str, dtype: torch.dtype, worst: dict[str, float], tol: dict[str, float]) -> None:
    print(f"\n{name} {dtype} max rel. deviation vs reference:", {k: f"{v:.1e}" for k, v in worst.items()})
    assert all(worst[k] <= tol[k] for k in worst), worst

"""Save and load trained potentials: one call from a path to a ready model.

``load_model(path) -> (model, info)`` accepts

- ``model.pt`` written by :func:`save_model` (what ``horm train`` leaves in its run folder),
- a Lightning ``.ckpt`` from ``horm train`` (with EMA on, its ``state_dict`` holds the
  averaged weights),
- a run folder: ``model.pt`` if present, else ``checkpoints/best.ckpt``, else ``last.ckpt``,
- a shipped-model name (``t1x-xtb-leftnet-efh`` etc., :mod:`horm.pretrained`).

``info`` holds ``config`` (the architecture, as ``model.config``), ``atom_ref`` ({Z: eV}, the
per-element references fitted on the training split; the model already adds them, so its
``energy`` output is a total energy), ``train_config`` (the training config dict, if known)
and ``path``. This module imports no Lightning, so the TS calculator stays light.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from horm.errors import DataError

FORMAT = "horm-model"
VERSION = 1


def atom_ref_dict(model) -> dict[int, float]:
    """The non-zero per-element references of ``model`` as {Z: eV}."""
    ref = model.atom_ref.detach().cpu().double()
    return {int(z): float(ref[z]) for z in torch.nonzero(ref).flatten().tolist()}


def save_model(model, path: str | os.PathLike, train_config: dict | None = None) -> Path:
    """Write architecture, weights and references to ``path`` (torch.save of plain types)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {"format": FORMAT, "version": VERSION, "config": dict(model.config),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "atom_ref": atom_ref_dict(model), "train_config": train_config,
            "dtype": str(next(model.parameters()).dtype).replace("torch.", "")}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)  # never a half-written model file
    return path


def resolve_model_path(path: str | os.PathLike) -> Path:
    """A shipped-model name (:mod:`horm.pretrained`) maps to its file; a run folder to its
    model.pt, best.ckpt or last.ckpt (in that order)."""
    from horm.pretrained import resolve

    p = Path(resolve(path))
    if p.is_dir():
        for cand in (p / "model.pt", p / "checkpoints" / "best.ckpt", p / "checkpoints" / "last.ckpt"):
            if cand.is_file():
                return cand
        raise DataError(str(p), "run folder holds no model.pt or checkpoints/{best,last}.ckpt")
    if not p.is_file():
        raise DataError(str(p), "no such model file")
    return p


def _torch_load(p: Path) -> dict:
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - report any unreadable file in one line
        raise DataError(str(p), f"cannot read model file ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu",
               dtype: torch.dtype | None = None) -> tuple[Any, dict]:
    """Build the model saved at ``path`` and load its weights; returns ``(model, info)`` in eval mode.

    ``dtype`` None keeps the precision the model was trained in (float32 or float64).
    """
    from horm.models.base import build_model_from_config

    p = resolve_model_path(path)
    blob = _torch_load(p)
    saved_dtype = None
    if blob.get("format") == FORMAT:
        config, state, train_config = blob["config"], blob["state_dict"], blob.get("train_config")
        saved_dtype = blob.get("dtype")
    elif "state_dict" in blob and "hyper_parameters" in blob:  # Lightning checkpoint of HormModule
        hp = blob["hyper_parameters"]
        if "model_config" not in hp:
            raise DataError(str(p), "Lightning checkpoint without 'model_config' (not written by horm train)")
        config, train_config = hp["model_config"], hp.get("config")
        saved_dtype = (train_config or {}).get("trainer", {}).get("precision")
        state = {k[len("model."):]: v for k, v in blob["state_dict"].items() if k.startswith("model.")}
    else:
        raise DataError(str(p), "not a horm model file or horm train checkpoint")
    model = build_model_from_config(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise DataError(str(p), f"weights do not match the architecture (missing {missing[:3]}, "
                                f"unexpected {unexpected[:3]})")
    model = model.to(device=device)
    if dtype is None and saved_dtype in ("float64", "float32"):
        dtype = getattr(torch, saved_dtype)  # the precision it was trained in
    if dtype is not None:
        model = model.to(dtype=dtype)
    model.eval()
    info = {"config": dict(config), "atom_ref": atom_ref_dict(model), "train_config": train_config, "path": str(p)}
    return model, info

"""Model files: save and load trained potentials, with metadata that says what the model is for.

``load_model(path) -> (model, info)`` accepts

- ``model.pt`` written by :func:`save_model` (what ``horm train`` leaves in its run folder),
- a Lightning ``.ckpt`` from ``horm train`` (with EMA on, its ``state_dict`` holds the
  averaged weights),
- a run folder: ``model.pt`` if present, else ``checkpoints/best.ckpt``, else ``last.ckpt``,
- a shipped-model name (``t1x-xtb-leftnet-efh`` etc., :mod:`horm.pretrained`).

A ``model.pt`` is a ``torch.save`` of plain types only (read back with ``weights_only=True``):
``format`` ("horm-model"), ``version`` (:data:`VERSION`; a file newer than this code is refused
with an error naming the file and both versions), ``config`` (the architecture),
``state_dict``, ``atom_ref`` ({Z: eV}), ``train_config``, ``dtype``, and since version 2 ``meta``:

==================  ==========================================================================
``horm_version``    horm that wrote the file
``torch_version``   torch that wrote the file
``elements``        sorted atomic numbers the model was trained on (the calculator's domain)
``level_of_theory`` the training labels' level of theory (``unknown`` if not known)
``data``            training-data summary: ``train``/``val`` sources, ``n_train``, ``n_val``,
                    ``n_atoms_min``/``n_atoms_max`` (filled by ``horm train``)
``created``         UTC time of writing (ISO 8601)
==================  ==========================================================================

``info`` (from :func:`load_model`) holds ``config``, ``atom_ref`` (the model already adds them, so
its ``energy`` output is a total energy), ``train_config``, ``path``, ``format_version``,
``elements`` (from ``meta``, else the elements with a fitted reference, else None: unknown),
``level_of_theory`` and ``meta``. This module imports no Lightning: inference never imports
training.
"""

from __future__ import annotations

import datetime
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from horm.errors import DataError
from horm.safe_io import disk_full
from horm.models.file_checks import (check_architecture, check_archive, check_atom_refs, check_elements,
                                     check_tensors, refused_global)

FORMAT = "horm-model"
VERSION = 2  # 1: no meta; 2: meta (versions, elements, level of theory, data summary)


def atom_ref_dict(model) -> dict[int, float]:
    """The non-zero per-element references of ``model`` as {Z: eV}."""
    ref = model.atom_ref.detach().cpu().double()
    return {int(z): float(ref[z]) for z in torch.nonzero(ref).flatten().tolist()}


def _meta(model, meta: dict | None) -> dict[str, Any]:
    from horm._version import __version__

    meta = dict(meta or {})
    elements = meta.get("elements")
    if elements is None:  # references are fitted on the training split: their elements are the domain
        elements = sorted(atom_ref_dict(model)) or None
    return {"horm_version": __version__, "torch_version": str(torch.__version__),
            "elements": sorted(int(z) for z in elements) if elements is not None else None,
            "level_of_theory": str(meta.get("level_of_theory") or "unknown"),
            "data": dict(meta.get("data") or {}),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def save_model(model, path: str | os.PathLike, train_config: dict | None = None,
               meta: dict | None = None) -> Path:
    """Write architecture, weights, references and metadata to ``path`` (torch.save of plain types).

    ``meta`` may give ``elements``, ``level_of_theory`` and ``data`` (see the module docstring);
    elements default to those with a fitted reference energy.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {"format": FORMAT, "version": VERSION, "config": dict(model.config),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "atom_ref": atom_ref_dict(model), "train_config": train_config,
            "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
            "meta": _meta(model, meta)}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # never a planted link
    os.close(fd)
    try:
        torch.save(blob, tmp)
        os.replace(tmp, path)  # never a half-written model file
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, (OSError, RuntimeError)) and disk_full(path.parent, exc):
            raise DataError(str(path), "no space left on device writing the model file; nothing was written, "
                                       f"a previous {path.name} is intact") from None
        raise
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
    if not p.exists():  # a FIFO or device exists, and _torch_load's check_archive refuses it by name
        raise DataError(str(p), "no such model file")
    return p


def _torch_load(p: Path) -> dict:
    check_archive(p)  # a regular torch zip of bounded unpacked size, before torch reads a byte
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - report any unreadable file in one line
        refused = refused_global(p, exc)
        if refused is not None:
            raise refused from None
        raise DataError(str(p), f"cannot read model file ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    if not isinstance(blob, dict):
        raise DataError(str(p), f"not a horm model file (holds a {type(blob).__name__}, expected a dict)")
    return blob


def _check_version(p: Path, blob: dict) -> int:
    v = blob.get("version")
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise DataError(str(p), f"model file format version {v!r} is not a positive integer")
    if v > VERSION:
        meta = blob.get("meta") if isinstance(blob.get("meta"), dict) else {}
        wrote = f"written by horm {meta['horm_version']}; " if meta.get("horm_version") else ""
        raise DataError(str(p), f"model file format version {v} is newer than this horm reads "
                                f"(version {VERSION}); {wrote}upgrade horm to load it")
    return v


def _unpack(p: Path, blob: dict) -> tuple[dict, dict, dict | None, str | None, dict, int]:
    """(config, state_dict, train_config, saved dtype, meta, format version) of a model file or
    checkpoint, every part checked for type, size and finiteness (:mod:`horm.models.file_checks`)."""
    src = str(p)
    if blob.get("format") == FORMAT:
        version = _check_version(p, blob)
        meta = blob.get("meta") if isinstance(blob.get("meta"), dict) else {}
        config, state, train_config, dtype = (blob.get("config"), blob.get("state_dict"),
                                              blob.get("train_config"), blob.get("dtype"))
        check_atom_refs(blob.get("atom_ref"), src)
    elif "state_dict" in blob and "hyper_parameters" in blob:  # Lightning checkpoint of HormModule
        hp = blob["hyper_parameters"]
        if not isinstance(hp, dict) or "model_config" not in hp:
            raise DataError(src, "Lightning checkpoint without 'model_config' (not written by horm train)")
        train_config = hp.get("config")
        trainer = train_config.get("trainer") if isinstance(train_config, dict) else None
        dtype = trainer.get("precision") if isinstance(trainer, dict) else None
        sd = blob["state_dict"]
        if not isinstance(sd, dict):
            raise DataError(src, f"state_dict is a {type(sd).__name__}, not a mapping of names to tensors")
        # the model's entries, checked once below with the rest; the optimiser's and others' are not read
        state = {k[len("model."):]: v for k, v in sd.items() if isinstance(k, str) and k.startswith("model.")}
        config, meta, version = hp["model_config"], hp.get("meta") if isinstance(hp.get("meta"), dict) else {}, 0
        check_atom_refs(hp.get("atom_ref"), src)
    else:
        raise DataError(src, "not a horm model file or horm train checkpoint")
    if not isinstance(config, dict):
        raise DataError(src, f"model config is a {type(config).__name__}, not a mapping")
    state = check_tensors(state, src)
    if train_config is not None and not isinstance(train_config, dict):
        raise DataError(src, f"train_config is a {type(train_config).__name__}, not a mapping")
    meta = dict(meta)
    meta["elements"] = check_elements(meta.get("elements"), src)
    return config, state, train_config, dtype if isinstance(dtype, str) else None, meta, version


def load_model(path: str | os.PathLike, device: Any = "cpu", dtype: Any = None) -> tuple[Any, dict]:
    """Build the model saved at ``path`` and load its weights; returns ``(model, info)`` in eval mode.

    ``device``: "cpu", "cuda", "cuda:N", "auto" or a torch.device. ``dtype``: "float32",
    "float64", a torch.dtype, or None to keep the precision the model was trained in.
    """
    from horm.models.registry import build_model_from_config
    from horm.models.published.checkpoint import is_lightning_checkpoint, load_published_checkpoint
    from horm.runtime import resolve_device, resolve_dtype

    dev, dtype = resolve_device(device), resolve_dtype(dtype)
    p = resolve_model_path(path)
    if is_lightning_checkpoint(p):  # a released HORM/HIP checkpoint: the published architectures
        return load_published_checkpoint(p, device=dev, dtype=dtype)
    config, state, train_config, saved_dtype, meta, version = _unpack(p, _torch_load(p))
    check_architecture(config, state, str(p))  # on the meta device: no allocation before it passes
    model = build_model_from_config(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # keys and shapes matched, so this is a value the model refuses
        raise DataError(str(p), f"weights do not load ({str(exc).splitlines()[0][:200]})") from None
    if dtype is None and saved_dtype in ("float64", "float32"):
        dtype = getattr(torch, saved_dtype)  # the precision it was trained in
    model = model.to(device=dev, dtype=dtype) if dtype is not None else model.to(device=dev)
    model.eval()
    refs = atom_ref_dict(model)
    elements = meta.get("elements") if meta.get("elements") is not None else (sorted(refs) or None)
    info = {"config": dict(config), "atom_ref": refs, "train_config": train_config, "path": str(p),
            "format_version": version, "elements": elements,
            "level_of_theory": str(meta.get("level_of_theory") or "unknown"), "meta": meta}
    return model, info


def model_info(path: str | os.PathLike) -> dict[str, Any]:
    """What a model file says about itself, without building the model (for ``horm model info``)."""
    from horm.models.published.checkpoint import is_lightning_checkpoint

    p = resolve_model_path(path)
    if is_lightning_checkpoint(p):
        return _published_info(p)
    blob = _torch_load(p)
    config, state, train_config, saved_dtype, meta, version = _unpack(p, blob)
    check_architecture(config, state, str(p))  # a file whose config its weights do not fit is broken
    n_params = sum(int(v.numel()) for k, v in state.items() if hasattr(v, "numel") and k != "atom_ref")
    refs = blob.get("atom_ref") or (blob.get("hyper_parameters") or {}).get("atom_ref") or {}  # model.pt or ckpt
    elements = meta.get("elements")
    if elements is None and refs:
        elements = sorted(int(z) for z in refs)
    return {"path": str(p), "format_version": version, "architecture": config.get("name", "?"),
            "parameters": n_params, "dtype": saved_dtype or "unknown",
            "horm_version": meta.get("horm_version", "unknown"), "torch_version": meta.get("torch_version", "unknown"),
            "elements": elements, "level_of_theory": meta.get("level_of_theory", "unknown"),
            "data": meta.get("data") or {}, "created": meta.get("created", "unknown"),
            "atom_ref": {int(z): float(e) for z, e in refs.items()}, "config": dict(config)}


def _published_info(p: Path) -> dict[str, Any]:
    """:func:`model_info` of a released HORM/HIP Lightning checkpoint (architecture recognised from its keys)."""
    from horm.models.published import HORM_ATOM_REFS_EV
    from horm.models.published.checkpoint import LEVEL_OF_THEORY, read_published_checkpoint, recognise_and_build

    hp, state = read_published_checkpoint(p)
    fmt, config, _model = recognise_and_build(hp, state, str(p))
    dtypes = sorted({str(v.dtype).replace("torch.", "") for v in state.values() if v.is_floating_point()})
    return {"path": str(p), "format_version": 0, "architecture": fmt.model,
            "parameters": sum(int(v.numel()) for v in _model.parameters()), "dtype": ",".join(dtypes) or "unknown",
            "horm_version": "not horm (released checkpoint)", "torch_version": "unknown",
            "elements": sorted(HORM_ATOM_REFS_EV), "level_of_theory": LEVEL_OF_THEORY, "data": {},
            "created": "unknown", "atom_ref": dict(HORM_ATOM_REFS_EV), "config": dict(config)}


def import_checkpoint(ckpt: str | os.PathLike, out_path: str | os.PathLike,
                      atom_refs: dict | None = None, dtype: Any = torch.float32) -> tuple[Path, dict]:
    """Convert a HORM/HIP checkpoint into our own safe model file; returns ``(out_path, info)``.

    Elements and level of theory go into the file's ``meta``; the provenance
    (:data:`PROVENANCE_FIELDS`) into ``train_config["imported_from"]``, which
    ``load_model(out_path)`` returns in ``info["train_config"]``.
    """
    from horm.models.published.checkpoint import (LEVEL_OF_THEORY, PROVENANCE_FIELDS, PROVENANCE_KEY,
                                                  load_published_checkpoint)

    model, info = load_published_checkpoint(ckpt, dtype=dtype, atom_refs=atom_refs)
    prov = {k: info[k] for k in PROVENANCE_FIELDS}
    out = save_model(model, out_path, train_config={PROVENANCE_KEY: prov},
                     meta={"elements": info["elements"], "level_of_theory": LEVEL_OF_THEORY})
    return out, info

"""Load HORM's and HIP's released Lightning checkpoints: safely, strictly, recognised by content.

``load_published_checkpoint("left.ckpt") -> (model, info)``:

1. **Safe.** The file is read through an explicit allow-list
   (:mod:`horm.models.published._lightning_pickle`): a checkpoint whose pickle names any other
   global is refused with one line naming the file and the global, and nothing in it runs.
   HIP's omegaconf hyper-parameters are collected by stubs into plain dicts, never executed.
2. **Recognised.** ``potential.`` is stripped from every ``state_dict`` key (a key without it is
   an error: the HORM/HIP layout holds only the potential), and each registered
   :class:`~horm.models.published.CheckpointFormat` is asked in registration order whether the
   checkpoint (its plain ``hyper_parameters`` and stripped state dict) is its architecture; the
   format rebuilds the config (from the state-dict shapes where the hyper-parameters do not
   carry the sizes). If several formats claim a checkpoint, the first whose architecture has
   exactly the checkpoint's keys and shapes wins. No format matches: one line saying what the
   file looks like (its ``model_config.name`` if any, a few keys).
3. **Strict.** Every missing or unexpected key, and every shape mismatch, is an error listing a
   few of them (HORM's ``eval.py`` loads with ``strict=False`` and ignores them silently; we
   never do). Non-finite weights are an error.
4. **Total energies.** The networks predict HORM's ``ae``; ``atom_ref`` (ours, never in the
   checkpoint) is set from :data:`~horm.models.published.HORM_ATOM_REFS_EV` (the fit stated in
   the reference manifests) or from user references ``{symbol or Z: eV}``, so ``energy`` is a
   total ωB97X/6-31G(d) energy in eV.

``info`` has the keys of :func:`horm.models.files.load_model`'s (``config``, ``atom_ref``,
``train_config`` (None), ``path``, ``format_version`` (0: a checkpoint), ``elements`` (atomic
numbers with an energy reference), ``level_of_theory``, ``meta``) plus the provenance
:data:`PROVENANCE_FIELDS`. :func:`horm.models.files.import_checkpoint` writes our own safe model file
(:func:`horm.models.files.save_model`): elements and level of theory in its ``meta``, the
provenance under ``train_config["imported_from"]``; ``load_model`` reads both back.
"""

from __future__ import annotations

import hashlib
import math
import os
import pickletools
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch

from horm.errors import UsageError, DataError
from horm.models.file_checks import check_archive, check_tensors, few, state_problems
from horm.models.published import FORMATS, HORM_ATOM_REFS_EV, CheckpointFormat
from horm.models.published._lightning_pickle import load_checkpoint_dict, plain

PREFIX = "potential."
LEVEL_OF_THEORY = "ωB97X/6-31G(d)"
PROVENANCE_KEY = "imported_from"
PROVENANCE_FIELDS = ("architecture", "source_name", "source_sha256", "level_of_theory", "atom_ref_source")


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- cheap check ---------------------------------------------------------------------------
def is_lightning_checkpoint(path: str | os.PathLike) -> bool:
    """True when ``path`` is a ``torch.save`` zip whose pickle holds a ``state_dict`` with
    ``potential.*`` keys (HORM/HIP's Lightning layout; ``horm train``'s own checkpoints use
    ``model.*`` and are not). Reads only the pickle (no tensor data) and runs nothing of it."""
    p = Path(path)
    try:
        if not p.is_file() or not zipfile.is_zipfile(p):
            return False
        check_archive(p)  # a bomb is refused by the reader that follows, with its own line
        with zipfile.ZipFile(p) as z:
            names = [n for n in z.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
            if len(names) != 1 or z.getinfo(names[0]).file_size > (256 << 20):
                return False
            data = z.read(names[0])
        seen_state, seen_key = False, False
        for _op, arg, _pos in pickletools.genops(data):
            if isinstance(arg, str):
                seen_state |= arg == "state_dict"
                seen_key |= arg.startswith(PREFIX)
                if seen_state and seen_key:
                    return True
    except Exception:  # noqa: BLE001 - unreadable or not a pickle: not one of ours
        return False
    return False


# --- reading ---------------------------------------------------------------------------------
def read_published_checkpoint(path: str | os.PathLike) -> tuple[dict | None, dict[str, torch.Tensor]]:
    """``(hyper_parameters as plain dicts or None, state_dict with "potential." stripped)``."""
    source = str(path)
    if not Path(path).is_file():
        raise DataError(source, "no such checkpoint file")
    blob = load_checkpoint_dict(path)
    sd = blob.get("state_dict")
    if not isinstance(sd, Mapping) or not sd:
        raise DataError(source, f"no state_dict (top-level keys: {few(sorted(map(str, blob)))})")
    sd = check_tensors(sd, source)  # named tensors that fit their storages, finite
    outside = sorted(k for k in sd if not k.startswith(PREFIX))
    if outside:
        raise DataError(source, f"state_dict keys outside '{PREFIX}' (not HORM/HIP's layout): {few(outside)}")
    state = {k[len(PREFIX):]: v.detach() for k, v in sd.items()}
    try:
        hp = plain(blob.get("hyper_parameters"))
    except (ValueError, RecursionError) as exc:
        raise DataError(source, f"unreadable hyper_parameters ({exc})") from None
    if hp is not None and not isinstance(hp, dict):
        raise DataError(source, f"hyper_parameters is a {type(hp).__name__}, not a dict")
    return hp, state


def describe(hp: dict | None, state: Mapping[str, torch.Tensor]) -> str:
    """What an unrecognised checkpoint looks like, in one line."""
    mc = (hp or {}).get("model_config")
    name = mc.get("name") if isinstance(mc, dict) else None
    what = f"model_config.name {name!r}" if name is not None else "no model_config.name"
    return f"{what}, {len(state)} weights ({few(sorted(state))})"


# --- strict loading ----------------------------------------------------------------------------
def key_problems(model: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> str | None:
    """None when ``state`` has exactly the model's keys (bar ``atom_ref``) and shapes, else why not."""
    expected = {k: v for k, v in model.state_dict().items() if k != "atom_ref"}
    return state_problems(expected, state, PREFIX)


def _claims(fmt: CheckpointFormat, hp, state) -> bool:
    try:
        return bool(fmt.recognise(hp, state))
    except Exception:  # noqa: BLE001 - a hostile checkpoint may break a format's guess: not its kind
        return False


def _build(fmt: CheckpointFormat, hp, state, source: str):
    from horm.models.registry import build_model_from_config

    try:
        config = dict(fmt.config(hp, state))
        with torch.device("meta"):  # shapes first: nothing is allocated for a config the weights do not fit
            model = build_model_from_config(config)
    except KeyError as exc:
        if exc.args and isinstance(exc.args[0], str) and exc.args[0] not in state:
            raise DataError(source, f"looks like {fmt.model} but 1 missing key(s): {PREFIX}{exc.args[0]} "
                                    "(needed to infer its sizes)") from None
        raise DataError(source, f"looks like {fmt.model} but its architecture cannot be rebuilt (KeyError: {exc})") from None
    except Exception as exc:  # noqa: BLE001 - one line naming the architecture and the cause
        first = (str(exc).splitlines() or [""])[0][:200]
        raise DataError(source, f"looks like {fmt.model} but its architecture cannot be rebuilt "
                                f"({type(exc).__name__}: {first})") from None
    return config, model


def recognise_and_build(hp: dict | None, state: Mapping[str, torch.Tensor], source: str = "<checkpoint>"):
    """``(format, config, model)`` for the checkpoint, weights not yet loaded; strict key check done."""
    from horm.models.published import load_all

    load_all()  # imports every published module, which registers its format
    candidates = [f for f in FORMATS if _claims(f, hp, state)]
    if not candidates:
        known = ", ".join(f.model for f in FORMATS) or "none registered"
        raise DataError(source, f"not a checkpoint of a known published model ({known}): {describe(hp, state)}")
    first_problem = None
    for fmt in candidates:
        config, model = _build(fmt, hp, state, source)
        problem = key_problems(model, state)
        if problem is None:
            from horm.models.registry import build_model_from_config

            return fmt, config, build_model_from_config(config)
        first_problem = first_problem or (fmt, problem)
    fmt, problem = first_problem
    raise DataError(source, f"weights do not match {fmt.model}: {problem}")


# --- energy references -------------------------------------------------------------------------
def parse_atom_refs(refs: Mapping[Any, Any] | None) -> dict[int, float]:
    """``{Z: eV}`` from ``{symbol or Z: eV}``; None gives the HORM fit (HORM_ATOM_REFS_EV)."""
    if refs is None:
        return dict(HORM_ATOM_REFS_EV)
    from ase.data import atomic_numbers

    out: dict[int, float] = {}
    for key, value in refs.items():
        k = str(key).strip()
        z = int(k) if k.isdigit() else atomic_numbers.get(k.capitalize(), 0)
        if not 1 <= z <= 118:
            raise UsageError(f"atom reference {key!r}: not an element symbol or atomic number 1-118")
        try:
            e = float(value)
        except (TypeError, ValueError):
            raise UsageError(f"atom reference {key!r}: {value!r} is not a number (eV)") from None
        if not math.isfinite(e):
            raise UsageError(f"atom reference {key!r}: {value!r} is not finite")
        out[z] = e
    if not out:
        raise UsageError("atom references: empty mapping (give eV per element, e.g. {'H': -16.71})")
    return out


# --- the API -----------------------------------------------------------------------------------
def load_published_checkpoint(path: str | os.PathLike, device: Any = "cpu", dtype: Any = torch.float32,
                              atom_refs: Mapping[Any, Any] | None = None) -> tuple[Any, dict]:
    """Build the published architecture of a HORM/HIP Lightning checkpoint and load it strictly.

    Returns ``(model, info)``, the model in eval mode; see the module docstring for ``info``.
    ``device``/``dtype`` as :func:`horm.models.files.load_model` takes them; ``dtype`` None means
    float32, the precision the checkpoints were trained and saved in. ``atom_refs``:
    ``{symbol or Z: eV}`` to use instead of the HORM fit.
    """
    from horm.runtime import resolve_device, resolve_dtype

    source = str(path)
    dev, dtype = resolve_device(device), resolve_dtype(dtype) or torch.float32
    refs = parse_atom_refs(atom_refs)
    hp, state = read_published_checkpoint(path)
    fmt, config, model = recognise_and_build(hp, state, source)
    try:
        model.load_state_dict({**state, "atom_ref": torch.zeros_like(model.atom_ref)}, strict=True)
    except RuntimeError as exc:  # key_problems() passed, so this is a value the model refuses
        raise DataError(source, f"weights do not load into {fmt.model} ({str(exc).splitlines()[0][:200]})") from None
    model = model.to(device=dev, dtype=dtype).eval()
    model.set_atom_ref(refs)  # after the cast: exact in float64
    meta = {"elements": sorted(refs), "level_of_theory": LEVEL_OF_THEORY, "data": {}}
    info = {"config": dict(config), "atom_ref": dict(refs), "train_config": None, "path": source,
            "format_version": 0, "elements": sorted(refs), "level_of_theory": LEVEL_OF_THEORY, "meta": meta,
            "architecture": fmt.model, "source_name": Path(path).name, "source_sha256": sha256_file(path),
            "atom_ref_source": "HORM fit (reference manifests)" if atom_refs is None else "user"}
    return model, info


def provenance(info: Mapping[str, Any]) -> dict | None:
    """The import provenance of a model loaded by ``load_model`` (None for a model we trained)."""
    tc = info.get("train_config")
    meta = tc.get(PROVENANCE_KEY) if isinstance(tc, Mapping) else None
    return dict(meta) if isinstance(meta, Mapping) else None

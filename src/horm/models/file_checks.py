"""What a model file may hold before anything in it is believed: the checks every model reader runs.

A model file (``model.pt``, a ``horm train`` checkpoint, a released HORM/HIP checkpoint) comes
from elsewhere and is read as hostile. Nothing here runs code from the file (the unpicklers are
allow-lists, :mod:`horm.safe_pickle`); these checks make sure that reading and building also
cost no more memory than the file's own size, and that what is built is what the file holds:

1. **The archive** (:func:`check_archive`): a regular file (a FIFO, ``/dev/zero`` or any device
   is refused before it is opened), in torch's zip format (the legacy format allocates every
   storage at its declared size before reading it, so it is refused), whose entries declare at
   most :data:`MAX_INFLATION` times the file's size once unpacked (torch writes stored, not
   compressed, entries: a deflate bomb is refused before it is inflated).
2. **The tensors** (:func:`check_tensors`): each is a tensor whose elements fit in its own
   storage (a one-element storage viewed with stride 0 as 10⁸ elements would cost gigabytes the
   first time it is copied, cast or compared), and every floating value is finite; the error
   names the key.
3. **The architecture** (:func:`check_architecture`): the config is built on the ``meta``
   device first (shapes, no memory; every registered architecture builds there, a rule in
   ``tests/test_model_file_hostile.py``), and its keys and shapes are compared with the
   file's state dict before a real module is allocated. A config that declares 40,000 channels
   next to a 3 KB state dict is refused in one line, not after a 6 GB allocation.
4. **Torch's refusal** (:func:`refused_global`): when ``torch.load(weights_only=True)`` refuses
   a global, the message we give names the file and the global, without torch's terminal
   escapes or its advice to load the file unsafely.

Every problem is a :class:`~horm.errors.DataError`: one line, ``<file>: <problem>``.
"""

from __future__ import annotations

import math
import os
import re
import zipfile
from typing import Any, Mapping

import torch

from horm.errors import DataError
from horm.safe_io import check_input_file

#: unpacked bytes an archive may declare, as a multiple of its size on disk (torch stores its
#: entries uncompressed, so a real file declares about 1x), plus :data:`INFLATION_SLACK`
MAX_INFLATION = 2
INFLATION_SLACK = 1 << 20
NO_SIZE_CAP = 1 << 50  # model files are not read whole: the unpacked-size bound below is the cap
MAX_ENTRIES = 1_000_000  # zip entries (one per tensor storage, plus a handful)
_SHOW = 4  # keys named in one message


def few(keys, n: int = _SHOW) -> str:
    """The first ``n`` of ``keys``, comma-separated, with the total when there are more."""
    keys = [str(k) for k in keys]
    more = f", … ({len(keys)} in all)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


# --- 1. the archive ----------------------------------------------------------------------------
def check_archive(path: str | os.PathLike, kind: str = "model file") -> int:
    """Refuse anything but a regular torch zip archive of bounded unpacked size; returns its size.

    ``kind`` ("model file", "checkpoint") names the file in the messages."""
    p = check_input_file(path, limit=NO_SIZE_CAP)  # a regular file (a FIFO or device is refused by name)
    try:
        st = os.stat(p)
        with open(p, "rb") as f:
            head = f.read(4)
        with zipfile.ZipFile(p) as z:
            infos = z.infolist()
    except zipfile.BadZipFile:
        if head == b"PK\x03\x04":
            raise DataError(str(p), f"cannot read {kind}: a truncated or damaged zip archive") from None
        raise DataError(str(p), f"not a torch zip archive (a {kind} in torch's legacy format, or in any "
                                "other format, is not read)") from None
    except OSError as exc:
        raise DataError(str(p), f"cannot read {kind} ({exc.strerror or exc})") from None
    if len(infos) > MAX_ENTRIES:
        raise DataError(str(p), f"archive holds {len(infos):,} entries (at most {MAX_ENTRIES:,})")
    declared = sum(i.file_size for i in infos)
    limit = MAX_INFLATION * st.st_size + INFLATION_SLACK
    if declared > limit:
        raise DataError(str(p), f"archive declares {declared:,} bytes unpacked from {st.st_size:,} on disk "
                                f"(at most {MAX_INFLATION}x + {INFLATION_SLACK >> 20} MiB): refused before unpacking")
    return st.st_size


def refused_global(path: str | os.PathLike, exc: BaseException) -> DataError | None:
    """Our one line for torch's weights-only refusal of a pickled global; None for other errors."""
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", str(exc))  # torch colours its message
    if "weights only" not in text.lower() and "weights_only" not in text:
        return None
    m = re.search(r"GLOBAL ([\w.]+)", text) or re.search(r"[Uu]nsupported (?:global|operand)[^:]*:\s*([^\s,]+)", text)
    what = f"refused global {m.group(1)}" if m else "refused content"
    return DataError(str(path), f"{what}: a horm model file holds only tensors and plain values, "
                                "and nothing else in it is read")


# --- 2. the tensors -----------------------------------------------------------------------------
def check_tensors(tensors: Any, source: str, what: str = "state_dict", prefix: str = "") -> dict[str, torch.Tensor]:
    """``tensors`` as a ``{str: Tensor}`` dict whose tensors fit their storages and are finite."""
    if not isinstance(tensors, Mapping):
        raise DataError(source, f"{what} is a {type(tensors).__name__}, not a mapping of names to tensors")
    bad = [str(k) for k, v in tensors.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise DataError(source, f"{what} entries that are not named tensors: {few(prefix + k for k in bad)}")
    for k, v in tensors.items():
        need = v.numel() * v.element_size()
        have = v.untyped_storage().nbytes() - v.storage_offset() * v.element_size()
        if need > have:
            raise DataError(source, f"{what} tensor {prefix}{k} declares {v.numel():,} elements "
                                    f"({list(v.shape)}, strides {list(v.stride())}) over a storage of "
                                    f"{max(have, 0):,} bytes: refused")
    nonfinite = [prefix + k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if nonfinite:
        raise DataError(source, f"non-finite values in {few(nonfinite)}")
    return dict(tensors)


def check_atom_refs(refs: Any, source: str) -> dict[int, float]:
    """``{Z: eV}`` with Z in 1…118 and finite energies (a model file's ``atom_ref``)."""
    if refs is None:
        return {}
    if not isinstance(refs, Mapping):
        raise DataError(source, f"atom_ref is a {type(refs).__name__}, not a mapping of Z to eV")
    out = {}
    for z, e in refs.items():
        if isinstance(z, bool) or not isinstance(z, int) or not 1 <= z <= 118:
            raise DataError(source, f"atom_ref key {z!r:.40} is not an atomic number 1-118")
        if isinstance(e, bool) or not isinstance(e, (int, float)) or not math.isfinite(e):
            raise DataError(source, f"atom_ref[{z}] = {e!r:.40} is not a finite energy (eV)")
        out[z] = float(e)
    return out


def check_elements(elements: Any, source: str) -> list[int] | None:
    """A model's element domain: None (unknown) or atomic numbers 1…118."""
    if elements is None:
        return None
    if not isinstance(elements, (list, tuple)) or not all(
            isinstance(z, int) and not isinstance(z, bool) and 1 <= z <= 118 for z in elements):
        raise DataError(source, f"meta.elements {elements!r:.60} is not a list of atomic numbers 1-118")
    return sorted(set(elements))


# --- 3. the architecture ------------------------------------------------------------------------
def state_problems(expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor],
                   prefix: str = "") -> str | None:
    """None when ``state`` has exactly ``expected``'s keys, shapes and kinds, else why not (one line)."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    common = sorted(set(expected) & set(state))
    shapes = [f"{k} {list(state[k].shape)} vs model {list(expected[k].shape)}" for k in common
              if state[k].shape != expected[k].shape]
    kinds = [k for k in common if state[k].is_floating_point() != expected[k].is_floating_point()]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s): {few(prefix + k for k in missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s): {few(prefix + k for k in unexpected)}")
    if shapes:
        parts.append(f"{len(shapes)} wrong shape(s): {few(prefix + s for s in shapes)}")
    if kinds:
        parts.append(f"{len(kinds)} integer/float mismatch(es): {few(prefix + k for k in kinds)}")
    return "; ".join(parts) or None


def meta_model(config: Any, source: str):
    """The architecture of ``config`` built on the meta device (no memory): a DataError if unusable."""
    from horm.models.registry import build_model_from_config

    if not isinstance(config, Mapping):
        raise DataError(source, f"model config is a {type(config).__name__}, not a mapping")
    if not isinstance(config.get("name"), str):
        raise DataError(source, f"model config has no architecture name (name={config.get('name')!r:.40})")
    try:
        with torch.device("meta"):
            return build_model_from_config(dict(config))
    except Exception as exc:  # noqa: BLE001 - the file's settings (not the user's options) cannot be built
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
        raise DataError(source, f"model config is not usable ({first})") from None


def check_architecture(config: Any, state: Mapping[str, torch.Tensor], source: str,
                       skip: tuple[str, ...] = ()) -> None:
    """The config's architecture has exactly the state dict's keys and shapes (checked on meta)."""
    model = meta_model(config, source)
    expected = {k: v for k, v in model.state_dict().items() if k not in skip}
    problem = state_problems(expected, {k: v for k, v in state.items() if k not in skip})
    if problem:
        raise DataError(source, f"weights do not match the architecture {config['name']!r}: {problem}")

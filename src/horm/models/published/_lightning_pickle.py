"""Read a Lightning ``.ckpt`` (a ``torch.save`` zip) through an explicit allow-list.

``torch.load`` reads the zip (tensor storages, byte order, ``map_location``); every global its
pickle names goes through :class:`horm.safe_pickle.AllowListUnpickler` with the map below, so
a checkpoint that names anything else (``os.system``, ``builtins.eval``, a class of the
training code) is refused with one line naming the file and the global, before it is imported
or called. We pass the unpickler as ``pickle_module`` (torch subclasses its ``Unpickler`` and
adds only the storage loader); torch's own ``weights_only`` list is not used, so the list
below is the whole of what a checkpoint may name and the error text does not depend on the
torch version. A TorchScript archive, which ``torch.load`` would pass to ``torch.jit.load``,
is refused before torch sees it.

What the list holds, and why:

- tensors: ``torch._utils._rebuild_tensor_v2`` / ``_rebuild_parameter`` (wrapped: backward hooks
  or Python attributes on a tensor are refused), ``torch.Size``, ``torch.device``, the dtypes,
  ``collections.OrderedDict``; ``_codecs.encode`` restricted to latin-1 (protocol 2 writes
  ``bytes`` that way); ``builtins.set``/``frozenset``.
- Lightning extras (epoch, loops, callbacks, optimizer and scheduler states) are plain
  containers of these; ``AttributeDict`` (older Lightning hyper-parameters) becomes a dict.
- omegaconf: HIP's ``PotentialModule`` is built from a Hydra config and calls
  ``save_hyperparameters``, so its ``hyper_parameters["model_config"]`` is a pickled
  ``omegaconf.DictConfig`` (with ``ContainerMetadata``, ``AnyNode``, ``ListConfig``, ``typing.Any``,
  a ``defaultdict`` resolver cache and ``builtins.dict``/``int`` as type references). None of
  omegaconf is imported or run: its classes map to :class:`~horm.safe_pickle.StateOnly` stubs
  that only collect the pickled ``__dict__``, the defaultdict to a plain dict, the type
  references to inert markers, and :func:`plain` turns the collected tree into dicts and lists
  (``_content`` of a DictConfig/ListConfig, ``_val`` of a value node; ``_parent`` back-links are
  dropped). Interpolations (``"${...}"``) and missing values (``"???"``) stay the raw strings:
  nothing is resolved.
- ``pathlib`` paths (a training config may hold one) become strings.
"""

from __future__ import annotations

import collections
import os
import pickle
import types
import zipfile
from typing import Any

import torch

from horm.errors import DataError, UnsafePickleError
from horm.models.file_checks import check_archive
from horm.safe_pickle import AllowListUnpickler, StateOnly, state_only


class TypeRef:
    """Inert marker for a type the pickle only refers to (``typing.Any``, ``builtins.dict``)."""

    def __init__(self, qualname: str):
        self.qualname = qualname

    def __repr__(self) -> str:
        return f"<type {self.qualname}>"


class _AttributeDict(dict):
    """Stand-in for Lightning's ``AttributeDict`` (a dict subclass): stays a plain dict."""

    def __setstate__(self, state):  # a dict subclass pickles its __dict__ too; ignore it
        pass


_OMEGACONF = {
    "omegaconf.dictconfig": ("DictConfig",),
    "omegaconf.listconfig": ("ListConfig",),
    "omegaconf.base": ("ContainerMetadata", "Metadata"),
    "omegaconf.nodes": ("ValueNode", "AnyNode", "StringNode", "IntegerNode", "FloatNode",
                        "BooleanNode", "BytesNode", "PathNode"),
}
_CONTAINER_STUBS = {f"{m}.{n}": state_only(f"{m}.{n}") for m, names in _OMEGACONF.items() for n in names}
_DTYPES = ("float16", "bfloat16", "float32", "float64", "complex64", "complex128",
           "uint8", "int8", "int16", "int32", "int64", "bool")


def _refuse_tensor_extras(hooks, metadata, source):
    if hooks:
        raise UnsafePickleError(source, "refused tensor with backward hooks")
    if metadata:
        raise UnsafePickleError(source, "refused tensor with Python attributes")


def _allowed(source: str) -> dict[tuple[str, str], Any]:
    from torch._utils import _rebuild_tensor_v2

    def rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
        _refuse_tensor_extras(hooks, metadata, source)
        return _rebuild_tensor_v2(storage, offset, size, stride, False, collections.OrderedDict())

    def rebuild_parameter(data, requires_grad=True, hooks=None):
        _refuse_tensor_extras(hooks, None, source)
        if not isinstance(data, torch.Tensor):
            raise UnsafePickleError(source, "refused parameter without tensor data")
        return torch.nn.Parameter(data, requires_grad=False)

    def encode(text, encoding="latin1"):
        if not isinstance(text, str) or str(encoding).lower() not in ("latin1", "latin-1"):
            raise UnsafePickleError(source, f"refused _codecs.encode with encoding {encoding!r:.40}")
        return text.encode("latin1")

    allowed: dict[tuple[str, str], Any] = {
        ("torch._utils", "_rebuild_tensor_v2"): rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): rebuild_parameter,
        ("torch", "Size"): torch.Size,
        ("torch", "device"): torch.device,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("collections", "defaultdict"): lambda *args: {},  # omegaconf's resolver cache; factory ignored
        ("_codecs", "encode"): encode,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("typing", "Any"): TypeRef("typing.Any"),
        ("pathlib", "PosixPath"): lambda *parts: os.path.join(*map(str, parts)) if parts else "",
        ("pathlib", "PurePosixPath"): lambda *parts: os.path.join(*map(str, parts)) if parts else "",
    }
    allowed.update({("torch", d): getattr(torch, d) for d in _DTYPES})
    allowed.update({("builtins", t): TypeRef(t) for t in ("dict", "list", "tuple", "int", "float", "str",
                                                          "bool", "bytes", "object")})
    allowed.update({tuple(q.rsplit(".", 1)): cls for q, cls in _CONTAINER_STUBS.items()})
    for mod in ("lightning_fabric.utilities.data", "lightning.fabric.utilities.data",
                "pytorch_lightning.utilities.parsing", "lightning.pytorch.utilities.parsing"):
        allowed[(mod, "AttributeDict")] = _AttributeDict
    return allowed


def _pickle_module(source: str) -> types.ModuleType:
    """A module-like object for ``torch.load(pickle_module=...)``: our allow-list Unpickler."""
    allowed = _allowed(source)
    unpickler = type("CheckpointUnpickler", (AllowListUnpickler,), {"allowed": allowed, "source": source})
    mod = types.ModuleType("horm_checkpoint_pickle")
    mod.Unpickler = unpickler
    mod.load = lambda f, **kw: unpickler(f, **kw).load()
    mod.UnpicklingError = pickle.UnpicklingError
    return mod


def _refuse_torchscript(source: str) -> None:
    """torch.load hands a TorchScript archive (a zip with constants.pkl) to torch.jit.load: never."""
    try:
        with zipfile.ZipFile(source) as z:
            scripted = any(n.rsplit("/", 1)[-1] == "constants.pkl" for n in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return  # not a zip: check_archive has refused it already
    if scripted:
        raise UnsafePickleError(source, "refused TorchScript archive (code, not a Lightning checkpoint)")


def load_checkpoint_dict(path: str | os.PathLike) -> dict:
    """The checkpoint's top-level dict, read through the allow-list (tensors on the CPU)."""
    source = str(path)
    check_archive(source, "checkpoint")  # a regular torch zip of bounded unpacked size, before torch reads it
    _refuse_torchscript(source)
    try:
        blob = torch.load(source, map_location="cpu", weights_only=False, pickle_module=_pickle_module(source))
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one line
        first = (str(exc).splitlines() or [""])[0][:200]
        raise DataError(source, f"cannot read checkpoint ({type(exc).__name__}: {first})") from None
    if not isinstance(blob, dict):
        raise DataError(source, f"not a Lightning checkpoint (top level is {type(blob).__name__}, not a dict)")
    return blob


def plain(obj: Any, depth: int = 0) -> Any:
    """Collected omegaconf stubs and Lightning dicts as plain dicts/lists (see the module docstring)."""
    if depth > 64:
        raise ValueError("hyper-parameters nested deeper than 64 levels")
    if isinstance(obj, StateOnly):
        kind = type(obj).__qualname__
        if kind.endswith(("DictConfig", "ListConfig")):
            return plain(obj.state.get("_content"), depth + 1)
        if kind.startswith("omegaconf.nodes."):
            return plain(obj.state.get("_val"), depth + 1)
        return {k: plain(v, depth + 1) for k, v in obj.state.items() if k != "_parent"}
    if isinstance(obj, dict):
        return {k: plain(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list):
        return [plain(v, depth + 1) for v in obj]
    if isinstance(obj, tuple):
        return tuple(plain(v, depth + 1) for v in obj)
    return obj

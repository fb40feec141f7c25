"""Ground truth for the published HORM pickles: real ``pickle`` + real torch + stub PyG classes.

The stubs stand in for ``torch_geometric`` (not installed): they keep the pickled state
and can be pickled back under the same names, so tests can also write crafted records.
Use ``with stub_pyg():`` around both.
"""

from __future__ import annotations

import contextlib
import io
import pickle
import sys
import types
from collections import OrderedDict


class Data:
    def __init__(self, state=None):
        self.__dict__.update(state or {})

    def __setstate__(self, state):
        self.__dict__.update(state)

    def __reduce__(self):
        return (type(self), (), dict(self.__dict__))


class GlobalStorage(Data):
    pass


class DataEdgeAttr(Data):
    pass


class DataTensorAttr(Data):
    pass


_MODULES = {
    "torch_geometric.data.data": (Data, DataEdgeAttr, DataTensorAttr),
    "torch_geometric.data.storage": (GlobalStorage,),
}


@contextlib.contextmanager
def stub_pyg():
    """Register stub ``torch_geometric`` modules in ``sys.modules`` for the duration."""
    saved = {k: sys.modules.get(k) for k in ("torch_geometric", "torch_geometric.data", *_MODULES)}
    try:
        for name in ("torch_geometric", "torch_geometric.data"):
            sys.modules[name] = types.ModuleType(name)
        for name, classes in _MODULES.items():
            mod = types.ModuleType(name)
            for c in classes:
                c.__module__ = name
                setattr(mod, c.__name__, c)
            sys.modules[name] = mod
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def ground_truth_mapping(raw: bytes) -> dict:
    """Field -> torch tensor of one HORM record, decoded by plain pickle (inside stub_pyg())."""
    import torch  # noqa: F401  (the pickle names torch._utils and torch.storage)

    obj = pickle.Unpickler(io.BytesIO(raw)).load()
    return dict(obj._store._mapping)


class CraftedTensor:
    """Pickles exactly like a torch tensor, but with whatever offset/size/stride we say."""

    def __init__(self, storage_tensor, offset, size, stride):
        self.storage = storage_tensor.contiguous().storage()
        self.offset, self.size, self.stride = offset, tuple(size), tuple(stride)

    def __reduce__(self):
        import torch

        return (torch._utils._rebuild_tensor_v2,
                (self.storage, self.offset, self.size, self.stride, False, OrderedDict()))


def dumps_record(mapping: dict) -> bytes:
    """Pickle a PyG-like Data record holding ``mapping`` (inside stub_pyg())."""
    return pickle.dumps(Data({"_store": GlobalStorage({"_mapping": mapping})}), protocol=4)

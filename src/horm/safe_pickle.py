"""Allow-list unpickling: read pickles written by other projects without running their code.

A pickle can name any importable global and call it while loading; ``pickle.loads`` on a file
from elsewhere therefore runs whatever the file says. Every pickle that ``horm`` reads goes
through :class:`AllowListUnpickler`: each global the stream names (``GLOBAL``, ``STACK_GLOBAL``,
``INST``, ``OBJ`` and the extension registry all resolve through ``find_class``) is looked
up in an explicit ``{(module, name): object}`` map, and anything else is refused with an
:class:`~horm.errors.UnsafePickleError` that names the source and the global, before it is
imported or called.

Foreign classes that only carry data are mapped to :class:`StateOnly`, a stand-in that keeps
whatever state the pickle hands it and runs no code of the original class.
"""

from __future__ import annotations

import _compat_pickle
import pickle
from typing import Any, Mapping

from horm.errors import UnsafePickleError

Globals = Mapping[tuple[str, str], Any]


class StateOnly:
    """Stand-in for a foreign class: keeps the pickled state (``.state``), runs no code.

    Built by ``NEWOBJ`` (``__new__`` only) or a call with arguments (kept in ``.args``).
    """

    args: tuple = ()
    state: dict = {}  # replaced, never mutated

    def __init__(self, *args, **kwargs):
        self.args = args

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], (dict, type(None))):
            state = {**(state[0] or {}), **(state[1] or {})}  # (dict state, slot state)
        self.state = state if isinstance(state, dict) else {"_state": state}


def state_only(qualname: str) -> type[StateOnly]:
    """A fresh :class:`StateOnly` subclass named after the global it stands for."""
    return type(qualname.rsplit(".", 1)[-1], (StateOnly,), {"__qualname__": qualname})


class AllowListUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose globals come only from ``allowed``.

    ``source`` (a file name) and ``where`` (e.g. ``"key 3"``, or None) go into the error
    message. Subclasses may set ``allowed``, ``source`` and ``where`` as class attributes.
    """

    allowed: Globals = {}
    source: str = "<pickle>"
    where: str | None = None

    def __init__(self, file, *, allowed: Globals | None = None, source: str | None = None,
                 where: str | None = None, **kwargs):
        super().__init__(file, **kwargs)
        if allowed is not None:
            self.allowed = allowed
        if source is not None:
            self.source = str(source)
        if where is not None:
            self.where = where

    def find_class(self, module, name):
        # Python 2 names (protocol 2 writes builtins as __builtin__, int as long), as pickle does
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        try:
            return self.allowed[(module, name)]
        except (KeyError, TypeError):
            raise self.refuse(f"refused global {module}.{name}") from None

    def refuse(self, problem: str) -> UnsafePickleError:
        """The one-line error for ``problem`` (to raise)."""
        return UnsafePickleError(self.source, problem, self.where)

"""Exceptions with one-line messages that name the source and the problem.

The CLI prints every HormError as one line: a UsageError (a bad option, setting or
config value) exits with status 2, every other HormError (DataError, LabelError, ...)
with status 1. Anything else is a bug and keeps its traceback. Set ``HORM_DEBUG=1``
to get the traceback of a HormError too.
"""

from __future__ import annotations


class HormError(Exception):
    """Base class for every error horm raises on purpose."""


class UsageError(HormError, ValueError):
    """An invalid option, setting or config value; the message says which and lists valid ones.

    A ValueError too, so that callers that validate with ``except ValueError`` keep working.
    """


class DataError(HormError, ValueError):
    """Bad input data. The message is one line: ``<source>: <where>: <problem>``."""

    def __init__(self, source: str, problem: str, where: str | None = None):
        self.source = str(source)
        self.where = where
        self.problem = problem
        loc = f"{self.source}: {where}" if where else self.source
        super().__init__(f"{loc}: {problem}".replace("\n", " "))


class UnsafePickleError(DataError):
    """A pickle asked for a global that is not on the allow-list."""


class TrainingError(HormError, RuntimeError):
    """Training cannot go on: a non-finite loss, gradient or weight (the run stops, no model is saved)."""


class LabelError(HormError, RuntimeError):
    """A labelling engine could not produce trustworthy labels (e.g. SCF not converged)."""


class DomainError(HormError, ValueError):
    """A structure outside what a model was trained for (elements, periodic cell, charge, spin)."""

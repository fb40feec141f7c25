"""Exceptions with one-line messages that name the source and the problem."""

from __future__ import annotations


class HormError(Exception):
    """Base class for every error horm raises on purpose."""


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


class LabelError(HormError, RuntimeError):
    """A labelling engine could not produce trustworthy labels (e.g. SCF not converged)."""


class DomainError(HormError, ValueError):
    """A structure outside what a model was trained for (elements, periodic cell, charge, spin)."""

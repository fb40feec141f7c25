"""Progress bars for long passes, in one place (rich).

:func:`progress_bar` is the bar every long job shows (job runner, convert, export). :func:`passes`
is for library code that makes one or more long passes over a file (indexes, splits, full reads):
it yields a ``start(description, total) -> advance(n)`` callable, the :data:`ProgressStart`
contract that :mod:`horm.data.index` and :mod:`horm.data.stats` take, or None when nothing is to
be shown; every bar it started is stopped on the way out, also when a pass raises.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Optional

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

ProgressStart = Optional[Callable[[str, int], Callable[[int], None]]]  # (description, total) -> advance(n)


def progress_bar(transient: bool = False, disable: bool = False) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), transient=transient, disable=disable)


@contextlib.contextmanager
def passes(show: bool = True) -> Iterator[ProgressStart]:
    """``start(description, total) -> advance(n)`` for long passes, on one transient bar display;
    None when ``show`` is false (the callers then count nothing)."""
    if not show:
        yield None
        return
    with progress_bar(transient=True) as bar:
        def start(desc: str, total: int) -> Callable[[int], None]:
            task = bar.add_task(desc, total=total)
            return lambda k=1: bar.advance(task, k)
        yield start

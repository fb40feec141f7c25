"""Sample many reactions (in parallel over reactions) and write the geometries.

``sample_reactions(paths, method, engine, workers=N)`` yields one
:class:`~horm.sample.neb.ReactionSamples` per reaction file as it finishes (a spawn
process pool with ``OMP_NUM_THREADS=1`` when ``workers > 1``). ``GeometryWriter`` writes
them either as extxyz (``rxn``, ``origin`` and ``key`` in each frame's comment line;
failures in ``<out>.failures.jsonl``) or as an unlabelled horm store (keys
``<rxn>:<origin>``, failures in its failures table), ready for ``horm label``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Iterable, Iterator, Literal, get_args

from horm.data.formats import is_ase_path
from horm.errors import HormError, UsageError
from horm.sample.irc import IrcSampleSettings, sample_irc
from horm.sample.neb import NebSampleSettings, ReactionSamples, error_line, sample_neb

Method = Literal["neb", "irc"]
UNLABELLED = "none (geometries only)"


def check_method(method: str) -> None:
    valid = get_args(Method)
    if method not in valid:
        raise UsageError(f"sampling method {method!r} is not valid; choose one of {', '.join(valid)}")


def default_settings(method: Method):
    return NebSampleSettings() if method == "neb" else IrcSampleSettings()


def sample_reaction(path: str | os.PathLike, method: Method, engine, settings=None,
                    spin: tuple = (None, None), threads: int | None = None) -> ReactionSamples:
    """Sample one reaction file (reactant, product frames) with ``engine`` as the potential.

    ``spin``: (charge, multiplicity) overriding the file's (None: keep); an odd electron
    count with no multiplicity given is run as a doublet, noted in the result's ``info``.
    ``threads``: intra-op threads per engine call (None: auto, 1 below 50 atoms; :mod:`horm.runtime`).
    """
    from horm.data.xyz import read_reaction
    from horm.label.engine import resolve_spin
    from horm.ts.calculator import HormCalculator

    check_method(method)
    t0 = time.perf_counter()
    path = Path(path)
    try:
        r, p = read_reaction(path)
    except HormError as exc:
        return ReactionSamples(path.stem, method, [], [{"key": f"{path.stem}:input", "reason": str(exc),
                                                        "stage": "input"}], time.perf_counter() - t0)
    notes = {n for n in (resolve_spin(r, *spin), resolve_spin(p, *spin)) if n}
    calc = HormCalculator(engine, name=getattr(engine, "name", "engine"), threads=threads)
    settings = settings or default_settings(method)
    try:
        res = sample_neb(r, p, calc, settings) if method == "neb" else sample_irc(r, p, calc, settings)
        if notes:
            res.info["notes"] = sorted(notes)
        return res
    except Exception as exc:  # noqa: BLE001 - one bad reaction must not end a batch
        return ReactionSamples(r.rxn, method, [], [{"key": f"{r.rxn}:{method}", "reason": error_line(exc),
                                                    "stage": method}], time.perf_counter() - t0)


_ENGINE = None
_THREADS = None


def _init(engine, threads=None) -> None:
    global _ENGINE, _THREADS
    os.environ["OMP_NUM_THREADS"] = str(threads or 1)
    _ENGINE, _THREADS = engine, threads


def _ping(_) -> int:
    return os.getpid()


def _task(path, method, settings, spin) -> ReactionSamples:
    return sample_reaction(path, method, _ENGINE, settings, spin, _THREADS)


def sample_reactions(paths: Iterable[str | os.PathLike], method: Method, engine, settings=None,
                     workers: int = 1, spin: tuple = (None, None),
                     threads: int | None = None) -> Iterator[ReactionSamples]:
    """Yield one ReactionSamples per reaction, in completion order when ``workers > 1``."""
    check_method(method)
    paths = [Path(p) for p in paths]
    if workers <= 1:
        for p in paths:
            yield sample_reaction(p, method, engine, settings, spin, threads)
        return
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    old = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init,
                                   initargs=(engine, threads))
        list(pool.map(_ping, range(workers)))
    finally:
        if old is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = old
    with pool:
        todo = list(paths)
        pending = set()
        while todo or pending:
            while todo and len(pending) < 2 * workers:
                pending.add(pool.submit(_task, todo.pop(0), method, settings, spin))
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                yield f.result()


def reaction_files(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand directories into their ``*.xyz`` files (sorted); keep files as given."""
    out: list[Path] = []
    for x in inputs:
        p = Path(x)
        out += sorted(p.glob("*.xyz")) if p.is_dir() else [p]
    return out


class GeometryWriter:
    """Collect sampled geometries into ``out``: ``.xyz``/``.extxyz``/``.traj``/ASE ``.db``
    (:func:`horm.data.formats.export_samples`) or a horm store (any other suffix)."""

    def __init__(self, out: str | os.PathLike, method: str, engine_name: str, overwrite: bool = False):
        from horm.data.store import HessianStore

        self.out = Path(out)
        self.as_xyz = is_ase_path(self.out)
        self.frames: list = []
        self.failures: list[dict] = []
        self.store = None
        if not self.as_xyz:
            if self.out.exists() and not overwrite:
                self.store = HessianStore.open(self.out, readonly=False)
            else:
                self.store = HessianStore.create(self.out, UNLABELLED, overwrite=overwrite,
                                                 sampler=method, sampler_engine=engine_name)

    def add(self, res: ReactionSamples) -> None:
        if self.store is not None:
            self.store.extend(res.samples, skip_existing=True)
            info = dict(self.store.meta.get("reaction_info", {}))
            info[res.rxn] = {"n": len(res.samples), "seconds": round(res.seconds, 2), **res.info}
            self.store.update_meta(reaction_info=info)
            for f in res.failures:
                f = dict(f)
                self.store.record_failure(f.pop("key"), f.pop("reason"), **f)
        else:
            self.frames += res.samples
            self.failures += res.failures

    def close(self) -> Path:
        if self.store is not None:
            self.store.close()
            return self.out
        from horm.data.formats import export_samples

        export_samples(self.frames, self.out, overwrite=True)
        side = self.out.with_name(self.out.name + ".failures.jsonl")
        if self.failures:
            side.write_text("".join(json.dumps(f, default=str) + "\n" for f in self.failures))
        else:
            side.unlink(missing_ok=True)
        return self.out

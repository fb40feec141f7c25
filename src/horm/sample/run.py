"""Sample many reactions (in parallel over reactions) and write the geometries.

``sample_to(out, paths, method, engine, settings, jobs)`` samples every reaction file
through :mod:`horm.jobs` (serial, worker processes or Ray; a timeout per reaction) into a
``GeometryWriter``, which writes
them either as extxyz (``rxn``, ``origin`` and ``key`` in each frame's comment line;
failures in ``<out>.failures.jsonl``) or as an unlabelled horm store (keys
``<rxn>:<origin>``, failures in its failures table), ready for ``horm label``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Iterable, Literal, get_args

from horm.data.formats import is_ase_path
from horm.errors import HormError, UsageError
from horm.jobs import Job, JobOptions, output_lock, run_jobs
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
    from horm.calculators.potential import HormCalculator

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


def settings_for(method: Method, steps: int | None = None, **fields):
    """The default settings of ``method`` with ``fields`` replaced (``dataclasses.replace``).

    ``steps``: NEB steps (neb: plain and climbing-image, each; irc: the TS-guess NEB). A
    field that ``method`` does not have is a UsageError, never silently ignored.
    """
    check_method(method)
    base = default_settings(method)
    if steps is not None:
        fields.update({"neb_steps": steps, **({"ci_steps": steps} if method == "neb" else {})})
    names = {f.name for f in dataclasses.fields(base)}
    bad = sorted(set(fields) - names)
    if bad:
        raise UsageError(f"{', '.join(bad)}: not a setting of method {method!r} (its settings: {', '.join(sorted(names))})")
    return dataclasses.replace(base, **fields)


def _the(obj):
    return obj


def _sample_task(engine, payload) -> ReactionSamples:
    path, method, settings, spin, threads = payload
    return sample_reaction(path, method, engine, settings, spin, threads)


@dataclass
class SampleSummary:
    reactions: int  # reaction files given
    sampled: int  # sampled by this run
    skipped: int  # sampled before (store output)
    geometries: int  # geometries written by this run
    failures: int  # failures recorded by this run
    out: Path

    def line(self) -> str:
        skip = f", {self.skipped} sampled before" if self.skipped else ""
        return (f"sampled {self.geometries} geometries from {self.sampled} reactions{skip} "
                f"({self.failures} failures recorded) -> {self.out}")


def sample_to(out: str | os.PathLike, paths: Iterable[str | os.PathLike], method: Method, engine, settings=None,
              jobs: JobOptions | None = None, overwrite: bool = False, spin: tuple = (None, None),
              threads: int | None = None) -> SampleSummary:
    """Sample every reaction file of ``paths`` into ``out`` (see :class:`GeometryWriter`),
    through :mod:`horm.jobs` (``jobs``: workers, Ray, timeout per reaction). A store output
    is resumable: a rerun skips the reactions it already holds. ``spin``: (charge,
    multiplicity) overriding the files' (see :func:`sample_reaction`); ``threads``: per
    engine call (None: auto)."""
    check_method(method)
    paths = [Path(p) for p in paths]
    with output_lock(out):
        writer = GeometryWriter(out, method, getattr(engine, "name", "engine"), overwrite=overwrite)
        try:
            stats = run_jobs(((p.stem, (str(p), method, settings, spin, threads)) for p in paths),
                             Job(partial(_the, engine), _sample_task), writer, jobs or JobOptions(),
                             total=len(paths), title=f"sample ({method}/{getattr(engine, 'name', 'engine')})")
        finally:
            writer.close()
    return SampleSummary(len(paths), stats.computed, sum(stats.skipped.values()), writer.n_geometries,
                         writer.n_failures, Path(out))


def reaction_files(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand directories into their ``*.xyz`` files (sorted; regular files only, a symlink loop
    is never followed: :func:`horm.safe_io.list_files`); keep files as given."""
    from horm.safe_io import list_files

    out: list[Path] = []
    for x in inputs:
        p = Path(x)
        out += list_files(p, (".xyz",))[0] if p.is_dir() else [p]
    return out


class GeometryWriter:
    """Collect sampled geometries into ``out``: ``.xyz``/``.extxyz``/``.traj``/ASE ``.db``
    (:func:`horm.data.formats.export_samples`) or a horm store (any other suffix).

    A job sink (:class:`horm.jobs.Sink`): a store notes each finished reaction in its
    metadata (``sampled_reactions``), which a rerun skips; an xyz file is written at
    ``close`` (not resumable).
    """

    def __init__(self, out: str | os.PathLike, method: str, engine_name: str, overwrite: bool = False):
        from horm.data.store import HessianStore

        self.out = Path(out)
        self.method = method
        self.as_xyz = is_ase_path(self.out)
        self.frames: list = []
        self.failures: list[dict] = []
        self.store = None
        self.n_geometries = self.n_failures = 0
        self.sampled: set[str] = set()
        if not self.as_xyz:
            if self.out.exists() and not overwrite:
                self.store = HessianStore.open(self.out, readonly=False)
            else:
                self.store = HessianStore.create(self.out, UNLABELLED, overwrite=overwrite,
                                                 sampler=method, sampler_engine=engine_name)
            self.sampled = set(self.store.meta.get("sampled_reactions", []))

    def skip_reason(self, rxn: str) -> str | None:
        return "sampled before" if rxn in self.sampled else None

    def put(self, outcomes) -> None:
        """Job outcomes: a ReactionSamples, or a failure of the whole reaction."""
        for o in outcomes:
            res = o.value if o.ok else ReactionSamples(o.key, self.method, [], [
                {"key": f"{o.key}:{self.method}", "reason": o.message, "stage": o.kind}], o.seconds)
            self.add(res, key=o.key)

    def add(self, res: ReactionSamples, key: str | None = None) -> None:
        """One reaction's geometries and failures (``key``: its job key, default its id)."""
        self.n_geometries += len(res.samples)
        self.n_failures += len(res.failures)
        self.sampled.add(key or res.rxn)
        if self.store is not None:
            self.store.extend(res.samples, skip_existing=True)
            info = dict(self.store.meta.get("reaction_info", {}))
            info[res.rxn] = {"n": len(res.samples), "seconds": round(res.seconds, 2), **res.info}
            self.store.update_meta(reaction_info=info, sampled_reactions=sorted(self.sampled))
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

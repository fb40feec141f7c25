"""Run the TS search over a set of reactions: parallel, per-reaction timeout, resumable.

The reactions run through :mod:`horm.jobs`: ``workers`` long-lived worker processes (or
Ray actors with ``ray``) each load the potential once and run one reaction at a time, so
Sella's just-in-time compiled code is built once per worker, not once per reaction. A
reaction that exceeds ``timeout`` seconds is recorded as ``timeout`` and its worker is
killed (a fresh one takes its place), keeping the stages its partial ``record.json`` holds; a
worker that dies is recorded as ``error``. Workers die with their parent. Each reaction's
``OUT/<rxn>/log.txt`` gets a line per stage as it finishes, and the parent prints a line
per reaction. Every finished reaction is appended as one JSON line to
``OUT/results.jsonl``; a rerun skips the reactions already there (and collects a
``OUT/<rxn>/record.json`` that a worker finished just before its parent was killed), so a
killed benchmark resumes where it stopped. ``OUT/benchmark.json`` holds the potential and
settings, and a rerun with a different potential is refused, as is a second benchmark
running on the same folder. On a Ray cluster the per-reaction files (``OUT/<rxn>/``) are
written on the node that ran the reaction; ``results.jsonl`` holds every record.

Reactions are files ``*.xyz`` (two frames: reactant, product) in one folder, chosen by a
fixed seed (``select_reactions``), never by hand. The summary counts path, TS and IRC
success and intended outcomes with the median time per reaction (Fig. 2 of the paper);
:mod:`horm.ts.report` prints it and draws the bar chart.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np

from horm.errors import DataError, HormError, UsageError
from horm.jobs import Job, JobOptions, output_lock, run_jobs
from horm.safe_io import write_json_atomic
from horm.ts.workflow import RunSettings

RESULTS = "results.jsonl"
META = "benchmark.json"


def select_reactions(reactions_dir, n: int | None = None, seed: int = 0,
                     on_skip: Callable[[Path, str], None] | None = None) -> list[Path]:
    """The ``*.xyz`` files of a folder, sorted by name; with ``n``, a seeded random subset
    of n of them (numpy ``default_rng(seed)``, returned in name order). An entry that is not
    a regular file (a symlink loop, a dangling link, a FIFO, a device) is skipped, never
    followed: ``on_skip(path, reason)`` is told (default: a warning)."""
    from horm.safe_io import list_files

    d = Path(reactions_dir)
    if not d.is_dir():
        raise HormError(f"{d}: not a folder of reaction files")
    files, skipped = list_files(d, (".xyz",))
    for p, why in skipped:
        if on_skip is None:
            warnings.warn(f"{p}: skipped ({why})", stacklevel=2)
        else:
            on_skip(p, why)
    if not files:
        raise HormError(f"{d}: no *.xyz reaction files")
    if n is None or n >= len(files):
        return files
    if n < 1:
        raise UsageError(f"n must be >= 1, got {n}")
    idx = np.random.default_rng(seed).choice(len(files), size=n, replace=False)
    return [files[i] for i in sorted(idx)]


def read_results(out_dir) -> list[dict]:
    """Records in ``OUT/results.jsonl``, the latest one per reaction (a reaction retried
    with ``retry_failed`` has several lines); a torn last line from a kill is ignored."""
    p = Path(out_dir) / RESULTS
    if not p.exists():
        return []
    latest: dict[str, dict] = {}
    for line in p.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        latest[str(rec.get("rxn"))] = rec
    return list(latest.values())


def _append(out_dir: Path, rec: dict) -> None:
    """One record line onto ``OUT/results.jsonl`` (never through a symlink)."""
    fd = os.open(out_dir / RESULTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "a") as fh:
        fh.write(json.dumps(rec, default=float) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _no_symlinks(out: Path) -> None:
    """Refuse a run folder whose own files are symlinks: they would be written through."""
    for name in (RESULTS, META):
        if (out / name).is_symlink():
            raise DataError(str(out / name), "is a symlink; a benchmark never writes through one (remove it)")


def _failure(rxn: str, status: str, seconds: float, error: str, settings: dict | None = None,
             partial: dict | None = None) -> dict:
    """The record of a reaction that did not finish; ``partial``: the stages it recorded before."""
    from horm._version import __version__

    rec = {"path_success": False, "ts_success": False, "irc_success": False, "irc_converged": False,
           "irc_ends_relaxed": False, "intended": False, "outcome": None, "barrier_kcal_mol": None,
           "horm_version": __version__, "settings": settings}
    if partial:
        rec.update({k: v for k, v in partial.items() if k not in ("status", "seconds", "verify")})
        rec["outcome"], rec["intended"], rec["barrier_kcal_mol"] = None, False, None
    rec.update({"rxn": rxn, "status": status, "seconds": round(seconds, 3), "error": error})
    return rec


def _partial(rdir: Path) -> dict | None:
    """The partial record a killed reaction left behind (None when there is none)."""
    try:
        rec = json.loads((rdir / "record.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return rec if rec.get("status") == "running" else None


@contextmanager
def _output_to(path: Path):
    """This process's stdout/stderr (Python and C level) go to ``path`` inside the block."""
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    Path(path).unlink(missing_ok=True)  # a fresh file: never truncate one we did not make
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for k, old in zip((1, 2), saved):
            os.dup2(old, k)
            os.close(old)


def _load(potential: str, device: str, dtype: str | None, threads: int, refine: str | None = None,
          kwargs: tuple[dict | None, dict | None] = (None, None)):
    """The worker's calculators: the potential, and the reference when one refines."""
    from horm.calculators.potential import load_potential

    calc = load_potential(potential, device=device, dtype=dtype, threads=threads, kwargs=kwargs[0])
    if refine is None:
        return calc, None
    return calc, load_potential(refine, device=device, dtype=dtype, threads=threads, kwargs=kwargs[1])


def _ts_task(calcs, payload) -> dict:
    """One reaction in a worker: run the TS search, write ``OUT/<rxn>/``, return the record."""
    from horm.ts.record import stage_line
    from horm.ts.workflow import prepare_reaction, run_reaction

    calc, reference = calcs
    path, out_dir, settings, spin, proposal_dir = payload
    out, rxn = Path(out_dir), Path(path).stem
    out.mkdir(parents=True, exist_ok=True)
    (out / "record.json").unlink(missing_ok=True)
    t0 = time.perf_counter()
    with _output_to(out / "log.txt"):
        try:
            r, p, notes = prepare_reaction(path, *spin)
            return run_reaction(r, p, calc, RunSettings.from_dict(settings), out_dir=out, name=rxn, notes=notes,
                                refine=reference, proposal_dir=proposal_dir, on_stage=lambda name, st, rec: print(stage_line(name, st, rec), flush=True))
        except Exception as exc:  # recorded, the benchmark goes on
            import traceback

            traceback.print_exc()
            rec = _failure(rxn, "error", time.perf_counter() - t0, f"{type(exc).__name__}: {exc}".replace("\n", " "),
                           settings, _partial(out))
            write_json_atomic(out / "record.json", rec)
            return rec


class _ResultsSink:
    """Records into ``OUT/results.jsonl`` as they land; a rerun skips the reactions there."""

    def __init__(self, out: Path, done: set[str], on_result: Callable[[dict], None] | None, settings: dict):
        self.out, self.done, self.on_result, self.settings = out, done, on_result, settings

    def land(self, rec: dict) -> None:
        _append(self.out, rec)
        self.done.add(rec["rxn"])
        if self.on_result is not None:
            self.on_result(rec)

    def skip_reason(self, rxn: str) -> str | None:
        return "done" if rxn in self.done else None

    def put(self, outcomes) -> None:
        for o in outcomes:
            if o.ok:
                self.land(o.value)
            else:
                status = "timeout" if o.kind == "timeout" else "error"
                self.land(_failure(o.key, status, o.seconds, f"{o.message} (see {o.key}/log.txt)", self.settings,
                                   _partial(self.out / o.key)))


def _check_meta(out: Path, potential: str, settings: dict, refine: str | None = None) -> None:
    settings = json.loads(json.dumps(settings))  # tuples -> lists, as read back from disk
    meta = {"potential": potential, "settings": settings}
    if refine is not None:
        meta["refine"] = refine
    p = out / META
    if p.exists():
        old = json.loads(p.read_text())
        if old.get("potential") != potential:
            raise HormError(f"{out}: holds a benchmark with potential {old.get('potential')!r}, "
                            f"not {potential!r}; use another --out")
        if old.get("refine") != refine:
            raise HormError(f"{out}: holds a benchmark refined with {old.get('refine')!r}, not {refine!r}; "
                            f"use another --out")
        if old.get("settings") != settings:
            raise HormError(f"{out}: holds a benchmark with other TS settings; use another --out")
        return
    write_json_atomic(p, meta)


def run_benchmark(reactions: list[Path], potential: str, out_dir, workers: int = 1, timeout: float = 600.0,
                  settings: RunSettings | None = None, threads_per_worker: int = 1,
                  on_result: Callable[[dict], None] | None = None, retry_failed: bool = False,
                  ray: str | None = None, progress: bool = False, charge: int | None = None,
                  multiplicity: int | None = None, device: str = "cpu", dtype: str | None = "float64",
                  refine: str | None = None, potential_kwargs: dict | None = None,
                  refine_kwargs: dict | None = None, proposals=None) -> list[dict]:
    """Run (or resume) the TS search on ``reactions``; returns their latest records.

    Reaction ids are the file stems and must be unique. ``on_result`` is called with each
    new record as it lands. ``retry_failed`` runs again the reactions whose record says
    ``timeout`` or ``error`` (the new record supersedes the old line). ``ray``: None
    (worker processes on this machine), ``"local"`` or a Ray cluster address. A second
    benchmark on the same folder is refused (:class:`horm.jobs.OutputLocked`). ``charge``
    and ``multiplicity`` override the reaction files' (see
    :func:`horm.ts.workflow.prepare_reaction`). A reaction killed by its timeout keeps the
    stages it finished in its record. Each worker loads ``potential`` on ``device`` in
    ``dtype`` and computes with ``threads_per_worker`` intra-op threads. ``refine``: a
    reference spec (as ``potential``): the potential then proposes and the reference refines
    and judges (:mod:`horm.ts.refined`); ``*_kwargs``: keyword arguments of ``ase:`` specs.
    """
    opts = JobOptions(workers=workers, ray=ray, timeout=timeout, threads=threads_per_worker, isolate=True,
                      progress=progress)
    out = Path(out_dir)
    names = [Path(r).stem for r in reactions]
    if len(set(names)) != len(names):
        raise HormError("reaction file names (stems) must be unique")
    if proposals is not None:
        if refine is None:
            raise UsageError("--proposals needs --refine: the proposals are refined by the reference")
        meta = Path(proposals) / META
        by = json.loads(meta.read_text()).get("potential") if meta.is_file() else None
        if by != potential:
            raise UsageError(f"{proposals}: its proposals are by {by!r} (its {META}), not {potential!r}")
    with output_lock(out):
        out.mkdir(parents=True, exist_ok=True)
        _no_symlinks(out)
        settings = settings or RunSettings()
        if refine is not None and settings.refine is None:
            from dataclasses import replace

            from horm.ts.refine import RefineSettings

            settings = replace(settings, refine=RefineSettings())
        sdict = settings.to_dict()
        _check_meta(out, potential, sdict, refine)
        done = {r.get("rxn") for r in read_results(out)
                if not (retry_failed and r.get("status") in ("timeout", "error"))}
        sink = _ResultsSink(out, done, on_result, sdict)
        pending = []
        for path, rxn in zip(reactions, names):
            rec_path = out / rxn / "record.json"
            if rxn not in done and rec_path.exists():  # finished by a worker just before its parent died
                try:
                    rec = json.loads(rec_path.read_text())
                except json.JSONDecodeError:
                    rec = None
                if rec is not None and rec.get("status") != "running" and (rec.get("status") == "done"
                                                                           or not retry_failed):
                    sink.land(rec)
                    continue
            prop = None
            if proposals is not None and all((Path(proposals) / rxn / f).is_file()
                                             for f in ("record.json", "path.xyz")):
                prop = str((Path(proposals) / rxn).resolve())
            # absolute, not resolved: a symlink loop given here fails in its worker, as one record
            payload = (os.path.abspath(path), str((out / rxn).resolve()), sdict, (charge, multiplicity), prop)
            pending.append((rxn, payload))
        load = partial(_load, potential, device, dtype, threads_per_worker, refine, (potential_kwargs, refine_kwargs))
        run_jobs(pending, Job(load, _ts_task), sink, opts, total=len(pending),
                 title=f"ts benchmark ({Path(potential).name})")
    wanted = set(names)
    return [r for r in read_results(out) if r.get("rxn") in wanted]

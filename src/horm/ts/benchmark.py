"""Run the TS search over a set of reactions: parallel, per-reaction timeout, resumable.

``workers`` long-lived worker processes (multiprocessing ``forkserver``, with Sella and horm
imported once in the server) each load the potential once and run one reaction at a time,
so Sella's just-in-time compiled code is built once per worker, not once per reaction. A
reaction that exceeds ``timeout`` seconds is recorded as ``timeout`` and its worker is
killed (a fresh one takes its place), keeping the stages its partial ``record.json`` holds; a
worker that dies is recorded as ``error``. Each reaction's ``OUT/<rxn>/log.txt`` gets a line
per stage as it finishes, and the parent prints a line per reaction. Every finished reaction is appended as one JSON line to
``OUT/results.jsonl``; a rerun skips the reactions already there (and collects a
``OUT/<rxn>/record.json`` that a worker finished after its parent was killed), so a killed
benchmark resumes where it stopped. ``OUT/benchmark.json`` holds the potential and
settings, and a rerun with a different potential is refused.

Reactions are files ``*.xyz`` (two frames: reactant, product) in one folder, chosen by a
fixed seed (``select_reactions``), never by hand. The summary counts path, TS and IRC
success and intended outcomes with the median time per reaction (Fig. 2 of the paper);
:mod:`horm.ts.report` prints it and draws the bar chart.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

from horm.errors import HormError, UsageError
from horm.ts.workflow import RunSettings, write_json_atomic

RESULTS = "results.jsonl"
META = "benchmark.json"
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def select_reactions(reactions_dir, n: int | None = None, seed: int = 0) -> list[Path]:
    """The ``*.xyz`` files of a folder, sorted by name; with ``n``, a seeded random subset
    of n of them (numpy ``default_rng(seed)``, returned in name order)."""
    d = Path(reactions_dir)
    if not d.is_dir():
        raise HormError(f"{d}: not a folder of reaction files")
    files = sorted(d.glob("*.xyz"))
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
    with open(out_dir / RESULTS, "a") as fh:
        fh.write(json.dumps(rec, default=float) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _failure(rxn: str, status: str, seconds: float, error: str, settings: dict | None = None,
             partial: dict | None = None) -> dict:
    """The record of a reaction that did not finish; ``partial``: the stages it recorded before."""
    from horm import __version__

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


def _redirect_output(path: Path) -> None:
    """Send this process's stdout/stderr (Python and C level) to ``path``."""
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _serve(conn, potential: str, settings: dict, threads: int, spin: tuple, device: str = "cpu",
           dtype: str | None = "float64") -> None:
    """A long-lived worker: loads the potential once (and warms Sella's compiled code on
    the first reaction), then runs each reaction ``(path, out_dir)`` it receives and
    answers with the out_dir once ``record.json`` is written. ``None`` ends it."""
    import torch

    torch.set_num_threads(threads)
    from horm.ts.calculator import load_potential
    from horm.ts.workflow import prepare_reaction, run_reaction, stage_line

    calc, load_error = None, None
    try:
        calc = load_potential(potential, device=device, dtype=dtype, threads=threads)
    except Exception as exc:  # reported on every reaction instead
        load_error = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    run_settings = RunSettings.from_dict(settings)
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        path, out_dir = task
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        _redirect_output(out / "log.txt")
        t0 = time.perf_counter()
        rxn = Path(path).stem
        try:
            if load_error is not None:
                raise HormError(load_error)
            r, p, notes = prepare_reaction(path, *spin)
            run_reaction(r, p, calc, run_settings, out_dir=out, name=rxn, notes=notes,
                         on_stage=lambda name, st, rec: print(stage_line(name, st, rec), flush=True))
        except Exception as exc:  # recorded, the benchmark goes on
            import traceback

            traceback.print_exc()
            write_json_atomic(out / "record.json", _failure(rxn, "error", time.perf_counter() - t0,
                                                            f"{type(exc).__name__}: {exc}".replace("\n", " "),
                                                            settings, _partial(out)))
        conn.send(out_dir)


class _Slot:
    """One worker process and the reaction it is running (None when idle)."""

    def __init__(self, ctx, potential: str, settings: dict, threads: int, spin: tuple = (None, None),
                 device: str = "cpu", dtype: str | None = "float64"):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, potential, settings, threads, spin, device, dtype),
                                daemon=True)
        self.proc.start()
        child.close()
        self.task: tuple[str, Path] | None = None
        self.t_start = 0.0

    def give(self, rxn: str, path: Path, out: Path) -> None:
        rec_path = out / "record.json"
        if rec_path.exists():
            rec_path.unlink()
        self.conn.send((str(path), str(out)))
        self.task = (rxn, out)
        self.t_start = time.monotonic()

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join()
        self.conn.close()


def _context(threads: int):
    for var in _THREAD_VARS:  # the fork server inherits these at its start
        os.environ.setdefault(var, str(threads))
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["horm.ts.workflow", "horm.ts.calculator", "horm.data.xyz", "sella"])
    return ctx


def _check_meta(out: Path, potential: str, settings: dict) -> None:
    settings = json.loads(json.dumps(settings))  # tuples -> lists, as read back from disk
    meta = {"potential": potential, "settings": settings}
    p = out / META
    if p.exists():
        old = json.loads(p.read_text())
        if old.get("potential") != potential:
            raise HormError(f"{out}: holds a benchmark with potential {old.get('potential')!r}, "
                            f"not {potential!r}; use another --out")
        if old.get("settings") != settings:
            raise HormError(f"{out}: holds a benchmark with other TS settings; use another --out")
        return
    write_json_atomic(p, meta)


def _check_slot(sl: _Slot, timeout: float, land: Callable[[dict], None], sdict: dict) -> None:
    """Land the record of ``sl``'s reaction if it finished, died or ran past ``timeout``."""
    rxn, rdir = sl.task
    elapsed = time.monotonic() - sl.t_start
    answered = False
    try:
        answered = sl.conn.poll()
        if answered:
            sl.conn.recv()
    except (EOFError, OSError):
        answered = False
    if answered:
        sl.task = None
        try:
            land(json.loads((rdir / "record.json").read_text()))
        except (FileNotFoundError, json.JSONDecodeError):
            land(_failure(rxn, "error", elapsed, f"no record written (see {rxn}/log.txt)", sdict))
    elif not sl.proc.is_alive():
        sl.kill()
        sl.task = None
        land(_failure(rxn, "error", elapsed, f"worker died with exit code {sl.proc.exitcode} (see {rxn}/log.txt)",
                      sdict, _partial(rdir)))
    elif elapsed > timeout:
        sl.kill()
        sl.task = None
        land(_failure(rxn, "timeout", elapsed, f"killed after {timeout:g} s", sdict, _partial(rdir)))


def run_benchmark(reactions: list[Path], potential: str, out_dir, workers: int = 1, timeout: float = 600.0,
                  settings: RunSettings | None = None, threads_per_worker: int = 1,
                  on_result: Callable[[dict], None] | None = None, poll: float = 0.1,
                  retry_failed: bool = False, charge: int | None = None,
                  multiplicity: int | None = None, device: str = "cpu", dtype: str | None = "float64") -> list[dict]:
    """Run (or resume) the TS search on ``reactions``; returns their latest records.

    Each worker loads ``potential`` on ``device`` in ``dtype`` and computes with
    ``threads_per_worker`` intra-op threads.

    Reaction ids are the file stems and must be unique. ``on_result`` is called with each
    new record as it lands. ``retry_failed`` runs again the reactions whose record says
    ``timeout`` or ``error`` (the new record supersedes the old line). ``charge`` and
    ``multiplicity`` override the reaction files' (see :func:`horm.ts.workflow.prepare_reaction`).
    A reaction killed by its timeout keeps the stages it finished in its record.
    """
    if workers < 1:
        raise UsageError(f"workers must be >= 1, got {workers}")
    if timeout <= 0:
        raise UsageError(f"timeout must be > 0 seconds, got {timeout}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sdict = (settings or RunSettings()).to_dict()
    _check_meta(out, potential, sdict)
    names = [Path(r).stem for r in reactions]
    if len(set(names)) != len(names):
        raise HormError("reaction file names (stems) must be unique")
    done = {r.get("rxn") for r in read_results(out)
            if not (retry_failed and r.get("status") in ("timeout", "error"))}

    def land(rec: dict) -> None:
        _append(out, rec)
        done.add(rec["rxn"])
        if on_result is not None:
            on_result(rec)

    pending = []
    for path, rxn in zip(reactions, names):
        if rxn in done:
            continue
        rec_path = out / rxn / "record.json"
        if rec_path.exists():  # finished by a worker after its parent died
            try:
                rec = json.loads(rec_path.read_text())
            except json.JSONDecodeError:
                rec = None
            if rec is not None and rec.get("status") != "running" and (rec.get("status") == "done"
                                                                       or not retry_failed):
                land(rec)
                continue
        pending.append((Path(path), rxn))

    if pending:
        ctx = _context(threads_per_worker)
        slots: list[_Slot] = []
        try:
            while pending or any(sl.task for sl in slots):
                slots = [sl for sl in slots if sl.proc.is_alive() or sl.task]
                while pending and len(slots) < workers:
                    slots.append(_Slot(ctx, potential, sdict, threads_per_worker, (charge, multiplicity),
                                       device, dtype))
                for sl in slots:
                    if sl.task is None and pending and sl.proc.is_alive():
                        path, rxn = pending.pop(0)
                        sl.give(rxn, path, out / rxn)
                time.sleep(poll)
                for sl in slots:
                    if sl.task is not None:
                        _check_slot(sl, timeout, land, sdict)
        finally:
            for sl in slots:
                try:
                    if sl.proc.is_alive() and sl.task is None:
                        sl.conn.send(None)
                        sl.proc.join(timeout=2)
                except OSError:
                    pass
                sl.kill()
    wanted = set(names)
    return [r for r in read_results(out) if r.get("rxn") in wanted]

"""`horm ts ...`: TS search for one reaction (run) or a reaction set (benchmark, summary)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from horm.cli import app
from horm.cli._common import check_out_dir, friendly, positive, ts_settings_file
from horm.cli._options import device_option, dtype_option, threads_option
from horm.errors import UsageError

ts_app = typer.Typer(no_args_is_help=True,
                     help="Transition-state search: path → TS optimisation (model Hessian) → IRC → intended?")
app.add_typer(ts_app, name="ts")
out = Console()

_POTENTIAL_HELP = "xtb, dft, a shipped model name (horm model list) or a model file / run folder"


def _settings(settings_file: Optional[Path], hessian_every: Optional[int], ts_steps: Optional[int],
              interpolation: Optional[str], path_method: Optional[str], refine: Optional[str] = None,
              refine_hessian: Optional[str] = None, fallback: bool = False):
    from horm.ts.workflow import RunSettings

    d = ts_settings_file(settings_file)
    d = {k: dict(v) if isinstance(v, dict) else v for k, v in d.items()}
    if refine is None and (refine_hessian is not None or fallback or "refine" in d):
        raise UsageError("--refine-hessian, --fallback and a refine: section need --refine REF")
    if refine is not None:
        d.setdefault("refine", {})
        if refine_hessian is not None:
            d["refine"]["hessian"] = refine_hessian
        if fallback:
            d["refine"]["fallback"] = True
    if hessian_every is not None:
        d.setdefault("tsopt", {})["hessian_every"] = hessian_every
    if ts_steps is not None:
        d.setdefault("tsopt", {})["max_steps"] = ts_steps
    if interpolation is not None:
        d.setdefault("path", {})["interpolation"] = interpolation
    if path_method is not None:
        d.setdefault("path", {})["method"] = path_method
    return RunSettings.from_dict(d)


_SETTINGS_HELP = ("YAML with sections path/tsopt/irc/refine (fields of PathSettings, TSOptSettings, IRCSettings, "
                  "RefineSettings)")
_REFINE_HELP = ("reference that refines and judges the potential's TS: xtb, dft, a model, or "
                "ase:package.module:factory (the potential then only proposes)")
_REFINE_HESSIAN_HELP = "where the refinement's starting Hessian comes from: model, model-every or reference"
_FALLBACK_HELP = "run the reference-only search for a reaction whose refinement finds no TS"
_KWARGS_HELP = "YAML or JSON file of keyword arguments for an ase:module:factory spec"


def _kwargs(path: Optional[Path]) -> Optional[dict]:
    from horm.calculators.ase_adapter import read_kwargs

    return None if path is None else read_kwargs(path)


_CHARGE_HELP = "total charge (overrides the file's charge=)"
_MULT_HELP = "spin multiplicity 2S+1 (overrides the file's multiplicity=; odd electrons default to 2)"


@ts_app.command("run")
@friendly
def run_cmd(reaction: Path = typer.Argument(..., help="xyz with two frames: reactant, then product"),
            potential: str = typer.Option(..., "--potential", "-p", help=_POTENTIAL_HELP),
            out_dir: Path = typer.Option(..., "--out", "-o", help="folder for path.xyz, ts.xyz, irc.xyz, record.json"),
            charge: Optional[int] = typer.Option(None, "--charge", help=_CHARGE_HELP),
            multiplicity: Optional[int] = typer.Option(None, "--multiplicity", help=_MULT_HELP),
            settings_file: Optional[Path] = typer.Option(None, "--settings", help=_SETTINGS_HELP),
            hessian_every: Optional[int] = typer.Option(None, min=0,
                                                        help="recompute the Hessian every N TS steps (0: once)"),
            ts_steps: Optional[int] = typer.Option(None, min=1, help="max TS optimisation steps"),
            interpolation: Optional[str] = typer.Option(None, help="geodesic, idpp or linear"),
            path_method: Optional[str] = typer.Option(None, help="neb or none"),
            reference_ts: Optional[Path] = typer.Option(None, help="xyz of a reference TS for the RMSD"),
            refine: Optional[str] = typer.Option(None, "--refine", help=_REFINE_HELP),
            refine_hessian: Optional[str] = typer.Option(None, "--refine-hessian", help=_REFINE_HESSIAN_HELP),
            fallback: bool = typer.Option(False, "--fallback", help=_FALLBACK_HELP),
            potential_kwargs: Optional[Path] = typer.Option(None, "--potential-kwargs", help=_KWARGS_HELP),
            refine_kwargs: Optional[Path] = typer.Option(None, "--refine-kwargs", help=_KWARGS_HELP),
            threads: Optional[int] = threads_option(), device: str = device_option(),
            dtype: str = dtype_option()):
    """Run the TS search on one reaction, printing a line per stage as it finishes."""
    from horm.calculators.potential import load_potential
    from horm.data.xyz import read_xyz
    from horm.runtime import set_process_threads, threads_for
    from horm.ts.record import stage_line
    from horm.ts.workflow import prepare_reaction, run_reaction

    check_out_dir(out_dir)
    settings = _settings(settings_file, hessian_every, ts_steps, interpolation, path_method, refine,
                         refine_hessian, fallback)
    r, p, notes = prepare_reaction(reaction, charge, multiplicity)
    ref = read_xyz(reference_ts)[0].to_atoms() if reference_ts is not None else None
    calc = load_potential(potential, device=device, dtype=dtype, threads=threads, kwargs=_kwargs(potential_kwargs))
    reference = None if refine is None else load_potential(refine, device=device, dtype=dtype, threads=threads,
                                                           kwargs=_kwargs(refine_kwargs))
    set_process_threads(threads_for(getattr(calc, "potential", None), threads, len(r.numbers)))  # Sella's too
    for note in notes:
        out.print(f"note: {note}", highlight=False, soft_wrap=True)
    out.print(f"{reaction.stem}: {r.get_chemical_formula()} charge {r.info['charge']} multiplicity "
              f"{r.info['multiplicity']}, potential {potential}{'' if refine is None else f', refined with {refine}'}"
              f" → {out_dir}", highlight=False)
    rec = run_reaction(r, p, calc, settings, out_dir=out_dir, name=reaction.stem, reference_ts=ref, notes=notes,
                       refine=reference, on_stage=lambda name, st, rec: out.print(stage_line(name, st, rec), highlight=False,
                                                                soft_wrap=True, markup=False))
    rc = rec["reference_calls"]
    out.print(f"outcome: {rec['outcome']}  total {rec['seconds']:.1f} s, reference calls {rc['energy_forces']} "
              f"+ {rc['hessian']} Hessians  → {out_dir / 'record.json'}", highlight=False)


def _report(out_dir: Path, reference: Optional[Path], records: Optional[list], potential: Optional[str]) -> dict:
    from horm.ts.report import benchmark_report, summary_table

    res = benchmark_report(out_dir, reference, records, potential)
    out.print(summary_table(res["summary"], title=f"TS benchmark: {res['name']} ({out_dir})"))
    for line in res["lines"]:
        out.print(line, highlight=False)
    out.print(f"chart: {res['chart']}  summary: {out_dir / 'summary.json'}", highlight=False)
    return res


@ts_app.command("benchmark")
@friendly
def benchmark_cmd(reactions_dir: Path = typer.Argument(..., help="folder of reaction xyz files"),
                  potential: str = typer.Option(..., "--potential", "-p", help=_POTENTIAL_HELP),
                  out_dir: Path = typer.Option(..., "--out", "-o", help="run folder (results.jsonl; resumable)"),
                  workers: Optional[int] = typer.Option(None, "--workers", "-j", min=1,
                                                        help="reactions run in parallel (default: one per core)"),
                  ray: Optional[str] = typer.Option(None, "--ray", help="run on Ray: 'local' or a cluster ADDRESS"),
                  timeout: float = typer.Option(600.0, callback=positive,
                                                help="seconds per reaction before it is killed"),
                  n_reactions: Optional[int] = typer.Option(None, "--n-reactions",
                                                            help="pick N reactions by --seed (default: all)"),
                  n_old: Optional[int] = typer.Option(None, "--n", hidden=True),
                  charge: Optional[int] = typer.Option(None, "--charge", help=_CHARGE_HELP),
                  multiplicity: Optional[int] = typer.Option(None, "--multiplicity", help=_MULT_HELP),
                  seed: int = typer.Option(0, help="seed of the reaction pick"),
                  reference: Optional[Path] = typer.Option(None, help="another run folder to compare with"),
                  retry_failed: bool = typer.Option(False, help="run again reactions recorded as timeout or error"),
                  settings_file: Optional[Path] = typer.Option(None, "--settings", help=_SETTINGS_HELP),
                  hessian_every: Optional[int] = typer.Option(None, min=0,
                                                              help="recompute the Hessian every N TS steps"),
                  ts_steps: Optional[int] = typer.Option(None, min=1, help="max TS optimisation steps"),
                  interpolation: Optional[str] = typer.Option(None, help="geodesic, idpp or linear"),
                  path_method: Optional[str] = typer.Option(None, help="neb or none"),
                  refine: Optional[str] = typer.Option(None, "--refine", help=_REFINE_HELP),
                  refine_hessian: Optional[str] = typer.Option(None, "--refine-hessian", help=_REFINE_HESSIAN_HELP),
                  fallback: bool = typer.Option(False, "--fallback", help=_FALLBACK_HELP),
                  potential_kwargs: Optional[Path] = typer.Option(None, "--potential-kwargs", help=_KWARGS_HELP),
                  refine_kwargs: Optional[Path] = typer.Option(None, "--refine-kwargs", help=_KWARGS_HELP),
                  proposals: Optional[Path] = typer.Option(None, "--proposals", help=(
                      "a model-only benchmark of the same --potential: refine its bands and TSs "
                      "instead of searching again (needs --refine)")),
                  threads: Optional[int] = threads_option(), device: str = device_option(),
                  dtype: str = dtype_option()):
    """Run the TS search on a reaction set in parallel; resumes a killed run in the same --out."""
    from horm.calculators.potential import ENGINE_SPECS, load_potential
    from horm.runtime import default_workers
    from horm.ts.benchmark import run_benchmark, select_reactions

    check_out_dir(out_dir)
    settings = _settings(settings_file, hessian_every, ts_steps, interpolation, path_method, refine,
                         refine_hessian, fallback)
    pkw, rkw = _kwargs(potential_kwargs), _kwargs(refine_kwargs)
    load_potential(potential, device=device, dtype=dtype, kwargs=pkw)  # fail here, once, not in every worker
    if refine is not None:
        load_potential(refine, device=device, dtype=dtype, kwargs=rkw)
    files = select_reactions(reactions_dir, n_reactions if n_reactions is not None else n_old, seed,
                             on_skip=lambda p, why: out.print(f"note: {p}: skipped ({why})", highlight=False,
                                                              markup=False, soft_wrap=True))
    workers = workers if workers is not None else default_workers(len(files))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that running workers get killed too

    def show(rec: dict) -> None:
        bar = rec.get("barrier_kcal_mol")
        st = rec.get("stages", {})
        times = " ".join(f"{k} {v.get('seconds', 0):.1f}s" for k, v in st.items())
        flags = " ".join(f"{k}={'ok' if rec.get(f) else 'FAILED'}" for k, f in (("path", "path_success"), ("TS", "ts_success"),
                                                              ("IRC", "irc_converged")) if k == "path" or st)
        out.print(f"{rec['rxn']}: {rec.get('status', 'done')} {flags} outcome={rec.get('outcome')} "
                  f"barrier={'-' if bar is None else f'{bar:.1f}'} {rec.get('seconds', 0):.1f} s ({times})"
                  f"{'  ' + rec['error'] if rec.get('error') else ''}", highlight=False, markup=False)

    def spec(x: Optional[str]) -> Optional[str]:
        return str(Path(x).resolve()) if x is not None and Path(x).exists() and x not in ENGINE_SPECS else x

    records = run_benchmark(files, spec(potential), out_dir, workers=workers, timeout=timeout, settings=settings,
                            on_result=show, retry_failed=retry_failed, charge=charge, multiplicity=multiplicity,
                            threads_per_worker=threads or 1, device=device, dtype=dtype, ray=ray,
                            refine=spec(refine), potential_kwargs=pkw, refine_kwargs=rkw, proposals=proposals)
    _report(out_dir, reference, records, None)


@ts_app.command("summary")
@friendly
def summary_cmd(out_dir: Path = typer.Argument(..., help="a benchmark run folder"),
                reference: Optional[Path] = typer.Option(None, help="another run folder to compare with")):
    """Re-print the summary (and chart) of a benchmark folder, optionally against a reference run."""
    if not (out_dir / "results.jsonl").exists():
        raise UsageError(f"{out_dir}: no results.jsonl (not a benchmark folder)")
    _report(out_dir, reference, None, None)

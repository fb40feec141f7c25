"""`horm learn REACTIONS_DIR --engine xtb|dft --models M1 M2 … --out DIR --rounds R --budget N`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

import typer

from horm.cli import app
from horm.cli._common import check_out_dir, friendly, positive, ts_settings_file


@app.command("learn")
@friendly
def learn_cmd(
    reactions_dir: Path = typer.Argument(..., help="folder of training reaction xyz files (the searched pool)"),
    more_models: Optional[List[Path]] = typer.Argument(None, show_default=False,
                                                       help="more committee models (so that --models M1 M2 works)"),
    engine: str = typer.Option("xtb", "--engine", "-e", help="labelling engine: xtb or dft"),
    models: Optional[List[Path]] = typer.Option(None, "--models", "-m", help="committee model files, run folders "
                                                "or shipped names (horm model list)"),
    out: Path = typer.Option(..., "--out", "-o", help="run folder (resumable: rerun the same command)"),
    rounds: int = typer.Option(1, min=1, help="active-learning rounds"),
    budget: int = typer.Option(10, min=1, help="labels per round"),
    strategy: str = typer.Option("committee", help="committee (most uncertain), random (the baseline) or window "
                                 "(random within --trust)"),
    trust: Optional[Tuple[float, float]] = typer.Option(None, "--trust", show_default=False,
                                                        help="LO HI: the window strategy's score range (DP-GEN "
                                                        "trust levels; above HI is never picked)"),
    score: str = typer.Option("eigen", help="eigen (lowest Hessian modes), hessian or forces"),
    committee: str = typer.Option("models", help="models (spread across models) or head (direct head vs autograd)"),
    seed_store: Optional[Path] = typer.Option(None, help="labelled seed store (copied; never modified)"),
    heldout_reactions: Optional[Path] = typer.Option(None, help="folder of held-out reactions: TS evaluation"),
    heldout_store: Optional[Path] = typer.Option(None, help="held-out labelled split: Hessian MAE"),
    eval_max_samples: int = typer.Option(200, min=1, help="held-out samples evaluated per round"),
    pool_reactions: Optional[int] = typer.Option(None, min=1, help="training reactions searched per round"),
    search_models: int = typer.Option(1, min=1, help="committee models that run the pool's TS searches"),
    eval_models: int = typer.Option(1, min=1, help="committee models searched on the held-out reactions "
                                    "(the curve is their mean intended count)"),
    pool_max: int = typer.Option(1000, min=1, help="visited geometries scored per round (a seeded subset)"),
    finetune_steps: int = typer.Option(200, min=0, help="fine-tuning steps per model and round (0: none)"),
    train_set: Optional[List[str]] = typer.Option(None, "--train-set", help="fine-tuning setting KEY=VALUE "
                                                  "(horm train keys, e.g. trainer.batch_size=4; repeatable)"),
    engine_set: Optional[List[str]] = typer.Option(None, "--set", help="engine setting KEY=VALUE (repeatable)"),
    settings_file: Optional[Path] = typer.Option(None, "--settings", help="TS settings YAML (path/tsopt/irc)"),
    min_rmsd: float = typer.Option(0.05, min=0.0, help="Å: no two picks, nor a pick and a stored geometry, closer"),
    eigen_k: int = typer.Option(1, min=1, help="lowest modes compared by the eigen score"),
    dtype: str = typer.Option("float32", "--dtype", help="the committee's precision in TS searches: float32 or "
                              "float64"),
    workers: int = typer.Option(1, "--workers", "-j", min=1, help="parallel TS searches and labels"),
    ray: Optional[str] = typer.Option(None, "--ray", help="run on Ray: 'local' or a cluster ADDRESS"),
    timeout: float = typer.Option(600.0, callback=positive, help="seconds per TS search"),
    label_timeout: Optional[float] = typer.Option(None, callback=positive, help="seconds per label"),
    charge: Optional[int] = typer.Option(None, "--charge", help="total charge (overrides the reaction files')"),
    multiplicity: Optional[int] = typer.Option(None, "--multiplicity", help="2S+1 (overrides the files')"),
    seed: int = typer.Option(0, help="seed of the pool pick, random picks and fine-tuning"),
    compare: Optional[Path] = typer.Option(None, help="another learn run folder drawn in report.md"),
):
    """Active learning: TS searches → committee scores → label the most uncertain → fine-tune → evaluate."""
    from horm.cli.label import parse_options
    from horm.learn import LearnSettings, run_learning
    from horm.learn.report import CURVE

    check_out_dir(out)
    settings = LearnSettings(
        reactions=str(reactions_dir), models=tuple(map(str, list(models or []) + list(more_models or []))),
        out=str(out), engine=engine, rounds=rounds, budget=budget, strategy=strategy, score=score,
        trust_lo=trust[0] if trust else None, trust_hi=trust[1] if trust else None,
        committee=committee, eigen_k=eigen_k, min_rmsd=min_rmsd, seed_store=seed_store and str(seed_store),
        heldout_reactions=heldout_reactions and str(heldout_reactions),
        heldout_store=heldout_store and str(heldout_store), eval_max_samples=eval_max_samples,
        pool_reactions=pool_reactions, search_models=search_models, eval_models=eval_models, pool_max=pool_max,
        finetune_steps=finetune_steps,
        train_overrides=tuple(train_set or ()), ts_settings=ts_settings_file(settings_file),
        engine_settings=parse_options(engine_set), dtype=dtype, workers=workers, ray=ray, timeout=timeout,
        label_timeout=label_timeout, charge=charge, multiplicity=multiplicity, seed=seed,
        compare=compare and str(compare))
    state = run_learning(settings)
    last = state["rounds"][-1] if state["rounds"] else {}
    typer.echo(f"{len(state['rounds']) - 1} round(s) done, {last.get('labels', 0)} labels added; "
               f"report: {out / 'report.md'} ({CURVE})")

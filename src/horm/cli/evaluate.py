"""``horm evaluate MODEL... --data PATH --out DIR``: tables (1, 2, A.1), parity and radar plots."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from horm.cli import app
from horm.cli._common import ENERGY_KEY, FORCES_KEY, HESSIAN_KEY, check_out_dir, console, friendly, label_keys
from horm.cli._options import device_option, dtype_option, threads_option


def _names(paths: list[Path]) -> list[str]:
    """Readable, unique model names: the run folder name (or file stem), numbered if repeated."""
    raw = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            raw.append(p.name)
        elif p.parent.name == "checkpoints":
            raw.append(f"{p.parent.parent.name}:{p.stem}")
        else:
            raw.append(p.parent.name if p.stem == "model" else p.stem)
    out = []
    for i, n in enumerate(raw):
        out.append(n if raw.count(n) == 1 else f"{n}#{raw[:i].count(n) + 1}")
    return out


@app.command("evaluate")
@friendly
def evaluate_cmd(
    models: List[Path] = typer.Argument(..., help="model.pt files, horm train checkpoints or run folders"),
    data: Path = typer.Option(..., "--data", help="labelled data (HORM LMDB, horm store, xyz)"),
    out: Path = typer.Option(Path("eval_out"), "--out", "-o", help="folder for tables and plots"),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="molecules per batch"),
    max_samples: Optional[int] = typer.Option(None, "--max-samples", help="evaluate the first N samples only"),
    no_hessian: bool = typer.Option(False, "--no-hessian", help="energy and forces only"),
    name: Optional[List[str]] = typer.Option(None, "--name", help="display name per model (repeat)"),
    threads: Optional[int] = threads_option(),
    device: str = device_option(),
    dtype: Optional[str] = dtype_option(None),
    energy_key: Optional[str] = ENERGY_KEY, forces_key: Optional[str] = FORCES_KEY,
    hessian_key: Optional[str] = HESSIAN_KEY,
) -> None:
    """Evaluate one or more models on the same data, side by side."""
    from rich.progress import Progress

    from horm.data.io import level_of_theory, open_dataset
    from horm.evaluate.metrics import evaluate_model, summarise
    from horm.evaluate.report import write_report
    from horm.models.domain import theory_mismatch
    from horm.models.files import load_model
    from horm.runtime import auto_threads, resolve_device, thread_limit

    if name and len(name) != len(models):
        console.print(f"[red]error:[/red] {len(name)} --name for {len(models)} models", highlight=False)
        raise typer.Exit(2)
    names = list(name) if name else _names(models)
    resolve_device(device)  # options before any work: a CUDA request on a CPU build is a usage error
    check_out_dir(out)
    ds = open_dataset(data, label_keys(energy_key, forces_key, hessian_key))
    data_level = level_of_theory(ds)
    results = {}
    n_atoms = len(ds[0].numbers) if len(ds) else None
    with Progress(console=console, transient=True) as prog, thread_limit(auto_threads(threads, n_atoms)):
        for nm, path in zip(names, models):
            model, info = load_model(path, device=device, dtype=dtype)
            warning = theory_mismatch(info["level_of_theory"], data_level)
            if warning:
                console.print(f"[yellow]warning:[/yellow] {nm}: {warning}", highlight=False, soft_wrap=True)
            task = prog.add_task(f"evaluating {nm}", total=None)
            metrics, preds = evaluate_model(model, ds, batch_size=batch_size, hessian=not no_hessian,
                                            max_samples=max_samples,
                                            progress=lambda d, t, task=task: prog.update(task, completed=d, total=t))
            results[nm] = (metrics, summarise(metrics), preds)
    write_report(results, out)
    console.print((Path(out) / "table1.md").read_text(), highlight=False, markup=False)
    console.print(f"tables and plots written to {out}")

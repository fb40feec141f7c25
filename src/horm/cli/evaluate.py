"""``horm evaluate MODEL... --data PATH --out DIR``: tables (1, 2, A.1), parity and radar plots.

``--origin ts`` keeps only the samples made at one stage of the sampler (here the converged TSs):
at those, ``n_neg_agree`` says how often a model's Hessian shows exactly the reference's one
imaginary mode."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from horm.cli import app
from horm.cli._common import (ENERGY_KEY, FORCES_KEY, HESSIAN_KEY, OUTLIERS_HELP, check_out_dir, console, friendly,
                              label_keys)
from horm.cli._options import device_option, dtype_option, threads_option


@app.command("evaluate")
@friendly
def evaluate_cmd(
    models: List[Path] = typer.Argument(..., help="model.pt files, horm train checkpoints, run folders "
                                                  "or shipped model names (horm model list)"),
    data: Path = typer.Option(..., "--data", help="labelled data (HORM LMDB, horm store, xyz)"),
    out: Path = typer.Option(Path("eval_out"), "--out", "-o", help="folder for tables and plots"),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="molecules per batch"),
    max_samples: Optional[int] = typer.Option(None, "--max-samples", help="evaluate the first N samples only"),
    spread: bool = typer.Option(False, "--spread", help="with --max-samples: N samples evenly spaced over the file"),
    no_hessian: bool = typer.Option(False, "--no-hessian", help="energy and forces only"),
    origin: Optional[List[str]] = typer.Option(None, "--origin",
                                               help="only samples made at this stage (repeat): ts, irc, "
                                                    "irc:forward, neb:final, reactant, ... (origin or its prefix up to a ':')"),
    name: Optional[List[str]] = typer.Option(None, "--name", help="display name per model (repeat)"),
    threads: Optional[int] = threads_option(),
    device: str = device_option(),
    dtype: Optional[str] = dtype_option(None),
    allow_outliers: bool = typer.Option(False, "--allow-outliers", help=OUTLIERS_HELP + "; samples with impossible "
                                        "labels (NaN/inf, |E|/N > 1e7 eV) are then skipped, and both are counted in the report"),
    energy_key: Optional[str] = ENERGY_KEY, forces_key: Optional[str] = FORCES_KEY,
    hessian_key: Optional[str] = HESSIAN_KEY,
) -> None:
    """Evaluate one or more models on the same data, side by side."""
    from horm.data.io import open_dataset, select_origins
    from horm.errors import UsageError
    from horm.evaluate.run import evaluate_models, model_names
    from horm.runtime import resolve_device

    if name and len(name) != len(models):
        raise UsageError(f"{len(name)} --name for {len(models)} models")
    named = dict(zip(list(name) if name else model_names(models), models))
    resolve_device(device)  # options before any work: a CUDA request on a CPU build is a usage error
    check_out_dir(out)
    ds = open_dataset(data, label_keys(energy_key, forces_key, hessian_key))
    if origin:
        ds = select_origins(ds, origin, data)
        console.print(f"{len(ds)} samples with origin {' or '.join(ds.prefixes)}")
    evaluate_models(named, ds, out, batch_size=batch_size, hessian=not no_hessian, max_samples=max_samples,
                    spread=spread, device=device, dtype=dtype, threads=threads, console=console,
                    allow_outliers=allow_outliers)
    console.print((Path(out) / "table1.md").read_text(), highlight=False, markup=False)
    console.print(f"tables and plots written to {out}")

"""``horm train CONFIG.yaml [key=value ...] --data PATH [--val PATH] --out DIR``."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from horm.cli import app
from horm.cli._common import ENERGY_KEY, FORCES_KEY, HESSIAN_KEY, OUTLIERS_HELP, check_out_dir, console, friendly


@app.command("train", context_settings={"allow_extra_args": False})
@friendly
def train_cmd(
    config: Optional[str] = typer.Argument(None, help="YAML config (sections model, data, loss, optim, trainer); "
                                                      "may be omitted"),
    overrides: Optional[List[str]] = typer.Argument(None, help="key=value overrides, dotted keys, e.g. "
                                                              "loss.hessian=0 optim.lr=1e-3 resume=true"),
    data: Optional[Path] = typer.Option(None, "--data", help="training data: HORM LMDB (file or folder), "
                                                             "horm store, or xyz (read unchanged)"),
    val: Optional[Path] = typer.Option(None, "--val", help="validation data; default: reaction split of --data"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="run folder (config, checkpoints, logs, model.pt)"),
    init_from: Optional[Path] = typer.Option(None, "--init-from", help="fine-tune this model (model.pt, checkpoint "
                                                                       "or run folder): its architecture, weights "
                                                                       "and reference energies"),
    allow_outliers: bool = typer.Option(False, "--allow-outliers", help=OUTLIERS_HELP + " (data.allow_outliers)"),
    energy_key: Optional[str] = ENERGY_KEY, forces_key: Optional[str] = FORCES_KEY,
    hessian_key: Optional[str] = HESSIAN_KEY,
) -> None:
    """Train a potential with the E-F (Eq. 2) or E-F-H (Eq. 3) loss."""
    from horm.train.config import TrainConfig

    items = list(overrides or [])
    path = config
    if config is not None and "=" in config and not Path(config).is_file():
        items.insert(0, config)  # no config file, only overrides
        path = None
    cfg = TrainConfig.from_yaml(path, items)
    if data is not None:
        cfg.set("data.train", str(data))
    if val is not None:
        cfg.set("data.val", str(val))
    if out is not None:
        cfg.set("out", str(out))
    if init_from is not None:
        cfg.set("init_from", str(init_from))
    if allow_outliers:
        cfg.set("data.allow_outliers", True)
    for name, value in (("energy_key", energy_key), ("forces_key", forces_key), ("hessian_key", hessian_key)):
        if value is not None:
            cfg.set(f"data.{name}", value)
    cfg.validate()
    check_out_dir(Path(cfg.out))
    from horm.jobs.lock import launcher_lock

    with launcher_lock(cfg.out):  # before the slow imports: a second run into --out is refused at once
        from horm.train.run import train

        model_path = train(cfg)
    if model_path is not None:  # rank 0 only
        console.print(f"model written to {model_path}")

"""``train(cfg)``: one library call that runs a whole training job with Lightning.

The run folder ``cfg.out`` receives ``config.yaml`` (the typed config), ``checkpoints/``
(``stepNNNNNN.ckpt`` every ``trainer.ckpt_every_n_steps`` steps, ``last.ckpt``, ``best.ckpt``
by ``val/loss``), ``logs/`` (CSV, plus TensorBoard when installed), ``model.pt`` (final
weights, EMA ones when EMA is on) and ``run.json`` (sizes, steps, wall time).

Fine-tuning (``init_from=MODEL``, ``horm train --init-from MODEL``) builds the model with
MODEL's architecture, loads its weights and per-element references (not refitted), validates
once before training (``init_val_loss`` in ``run.json``) and then trains with the new config.

``trainer.max_time`` caps the wall time; Lightning's timer state is in every checkpoint, so
the budget is summed over resumed sessions (a resumed run whose budget is spent stops at once).

Resume (``resume=true``) continues from the readable checkpoint written at the highest step
(``last.ckpt`` or a step checkpoint: a kill just after ``step000010.ckpt`` leaves ``last.ckpt`` at
an older step); an unreadable one (cut short) is skipped with a line saying so. Checkpoints are
written whole or not at all (:class:`AtomicCheckpointIO`), and the run folder is locked
(``<out>.lock``, as ``label`` locks its store): a second run into it is refused at once. A resumed fine-tuning run is
rebuilt with its ``init_from`` model's architecture and references, and the checkpoint's
weights. A run folder that already holds checkpoints is refused without ``resume=true``, so a
run is never overwritten by accident.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import io
import json
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Callable

import lightning as L
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging, LearningRateMonitor, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.warnings import PossibleUserWarning

from horm.errors import HormError, TrainingError, UsageError
from horm.jobs.lock import launcher_lock
from horm.train.config import TrainConfig
from horm.train.data import load_train_data, make_loader
from horm.models.files import save_model
from horm.train.module import HormModule, ParamSyncCheck, SaveLastOnEnd

log = logging.getLogger(__name__)
_DTYPES = {"float32": torch.float32, "float64": torch.float64}
_PRECISION = {"float32": "32-true", "float64": "64-true"}


def _checkpoint_step(path: Path) -> int | None:
    """The global step a Lightning checkpoint was written at; None when it cannot be read whole."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
        return int(ck["global_step"]) if "state_dict" in ck and "loops" in ck else None
    except Exception:  # noqa: BLE001 - a truncated file raises anything
        return None


def find_resume_checkpoint(out: str | Path, on_skip: Callable[[Path], None] | None = None) -> Path | None:
    """The readable checkpoint (``last.ckpt`` or ``step*.ckpt`` in ``out/checkpoints``) written at
    the highest step; ``last.ckpt`` on a tie. A kill can leave ``last.ckpt`` behind the newest step
    checkpoint, or a step checkpoint cut short: each unreadable one is passed to ``on_skip``."""
    d = Path(out) / "checkpoints"
    if not d.is_dir():
        return None
    best: tuple[int, int, Path] | None = None
    for c in [d / "last.ckpt", *sorted(d.glob("step*.ckpt"))]:
        if not c.is_file():
            continue
        step = _checkpoint_step(c)
        if step is None:
            if on_skip is not None:
                on_skip(c)
            continue
        rank = (step, c.name == "last.ckpt", c)
        if best is None or rank[:2] > best[:2]:
            best = rank
    return None if best is None else best[2]


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written whole or not at all (:func:`horm.safe_io.write_atomic`: a temporary
    file in the checkpoint folder, free space checked first, renamed at the end). Lightning's own
    writer stages the file in /tmp and copies it over, which leaves a truncated checkpoint when
    the run's disk fills up."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        from horm.safe_io import write_atomic

        buf = io.BytesIO()
        torch.save(checkpoint, buf)
        write_atomic(path, buf.getbuffer())


def check_devices(t) -> None:
    """``trainer.devices`` against this machine, before any data is read: at most its CUDA GPUs
    (``accelerator`` gpu, or auto with CUDA), else at most its cores (one CPU process each)."""
    from horm.runtime import cpu_count

    gpu = t.accelerator == "gpu" or (t.accelerator == "auto" and torch.cuda.is_available())
    have, what = (torch.cuda.device_count(), "CUDA GPUs") if gpu else (cpu_count(), "CPU cores")
    if have == 0:
        raise UsageError(f"trainer.accelerator={t.accelerator}: no CUDA GPU is visible here; use trainer.accelerator=cpu")
    if t.devices > have:
        raise UsageError(f"trainer.devices={t.devices} is not valid here: this machine has {have} {what} "
                         f"(trainer.accelerator={t.accelerator}); valid: [1, {have}]")


def build_trainer(cfg: TrainConfig, has_val: bool) -> L.Trainer:
    t, out = cfg.trainer, Path(cfg.out)
    ckpt_dir = out / "checkpoints"
    callbacks: list = [
        ModelCheckpoint(dirpath=ckpt_dir, filename="step{step:06d}", auto_insert_metric_name=False,
                        every_n_train_steps=t.ckpt_every_n_steps, save_top_k=1, save_last=True,
                        enable_version_counter=False),
        SaveLastOnEnd(ckpt_dir / "last.ckpt"),
        ParamSyncCheck(out),
        LearningRateMonitor(logging_interval="step"),
    ]
    if has_val:
        callbacks.append(ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val/loss", mode="min",
                                         save_top_k=1, enable_version_counter=False,
                                         save_on_train_epoch_end=False))
    if cfg.optim.ema_decay is not None:
        callbacks.append(EMAWeightAveraging(decay=cfg.optim.ema_decay))
    if t.progress_bar:
        callbacks.append(_ProgressBar(leave=True))
    loggers: list = [CSVLogger(save_dir=str(out), name="logs")]
    if importlib.util.find_spec("tensorboard") is not None:
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(save_dir=str(out), name="tb"))
    val_kw: dict = {}
    if has_val and t.val_every_n_steps:
        val_kw = {"val_check_interval": t.val_every_n_steps, "check_val_every_n_epoch": None}
    if not has_val:
        val_kw = {"limit_val_batches": 0}
    elif t.limit_val_batches is not None:
        val_kw["limit_val_batches"] = t.limit_val_batches
    return L.Trainer(
        max_steps=t.max_steps, max_epochs=t.max_epochs, max_time=t.max_time, accelerator=t.accelerator,
        devices=t.devices, strategy=t.strategy, precision=_PRECISION[t.precision],
        gradient_clip_val=cfg.optim.grad_clip,
        callbacks=callbacks, logger=loggers, log_every_n_steps=t.log_every_n_steps,
        enable_progress_bar=t.progress_bar, inference_mode=False, num_sanity_val_steps=0,
        default_root_dir=str(out), enable_model_summary=False, plugins=[AtomicCheckpointIO()],
        use_distributed_sampler=False, **val_kw)  # the batch samplers shard themselves (HormModule.setup)


class _ProgressBar(RichProgressBar):
    """Rich progress line that says "step k/N" instead of Lightning's "Epoch 0/-2" when the
    run is bounded by steps (max_epochs = -1)."""

    def _get_train_description(self, current_epoch: int) -> str:
        tr = self.trainer
        if tr.max_epochs is not None and tr.max_epochs > 0:
            return super()._get_train_description(current_epoch)
        return f"Epoch {current_epoch} (max {tr.max_steps} steps)"

    def get_metrics(self, trainer, pl_module):
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)  # the logger's version number, not a metric
        return items


_NOISY_LOGGERS = ("lightning.pytorch", "lightning.fabric", "lightning")


@contextlib.contextmanager
def _quiet():
    """No Lightning tips, accelerator banners, "fit stopped" lines or library deprecation and
    "possible user" warnings during training: they are not about the user's run."""
    loggers = [logging.getLogger(n) for n in _NOISY_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    with warnings.catch_warnings():
        for cat in (DeprecationWarning, FutureWarning, PossibleUserWarning):
            warnings.filterwarnings("ignore", category=cat)
        warnings.filterwarnings("ignore", message=r".*is deprecated.*")
        warnings.filterwarnings("ignore", message=r".*logging interval.*")
        warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
        try:
            yield
        finally:
            for lg, lv in zip(loggers, levels):
                lg.setLevel(lv)


def train(cfg: TrainConfig, console=None) -> Path | None:
    """Run the training job described by ``cfg`` (quietly: see :func:`_quiet`); returns the path
    of ``model.pt`` (None on DDP ranks > 0). The run folder is locked like a store
    (:func:`horm.jobs.output_lock` on ``<out>.lock``): a second run into it is refused at once.
    A full disk is one :class:`TrainingError` line (checkpoints are written whole or not at all)."""
    cfg.validate()
    started = time.time()  # run.json's first_step_s counts from here
    try:
        with _quiet(), launcher_lock(cfg.out):
            return _train(cfg, console, started)
    except HormError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise TrainingError(f"{cfg.out}: no space left on device ({exc.filename or exc.strerror}); training "
                            f"stopped, the checkpoints already written are intact (resume=true after "
                            f"freeing space)") from None


def _train(cfg: TrainConfig, console=None, started: float | None = None) -> Path | None:
    """Run the training job described by ``cfg``; returns the path of ``model.pt`` (None on DDP ranks > 0)."""
    cfg.validate()
    check_devices(cfg.trainer)
    out = Path(cfg.out)
    ckpt = None
    if cfg.resume:
        ckpt = find_resume_checkpoint(out, on_skip=lambda p: _say(console, f"{p}: unreadable or truncated, skipped"))
        if ckpt is None:
            raise UsageError(f"resume=true but {out / 'checkpoints'} holds no readable checkpoint")
    elif (out / "checkpoints").is_dir() and any((out / "checkpoints").glob("*.ckpt")):
        raise UsageError(f"{out} already holds checkpoints; pass resume=true or choose another --out")
    L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    # fine-tune: the loaded architecture, weights and references (resumed: its architecture and
    # references, and the checkpoint's weights)
    init = _load_init(cfg) if cfg.init_from else None
    data = load_train_data(cfg.data, atom_ref=init[1]["atom_ref"] if init else None, out=cfg.out)
    with contextlib.closing(data):  # released even when training fails
        return _fit(cfg, data, init, ckpt, console, started)


def _fit(cfg: TrainConfig, data, init, ckpt, console, started: float | None = None) -> Path | None:
    """Build the module (from the fine-tuned model ``init`` when given), fit, save model.pt and run.json."""
    out = Path(cfg.out)
    _check_rows(cfg, data)
    if init is not None:
        module = HormModule(cfg.to_dict(), model_config=init[1]["config"], atom_ref=init[1]["atom_ref"])
        module.model.load_state_dict(init[0].state_dict())
    else:
        module = HormModule(cfg.to_dict(), atom_ref=data.atom_ref)
    dtype = _DTYPES[cfg.trainer.precision]
    t = cfg.trainer
    budget = {"max_atoms": t.batch_max_atoms, "max_hessian": t.batch_max_hessian}
    train_loader = make_loader(data.train, t.batch_size, dtype, shuffle=True, num_workers=cfg.data.num_workers,
                               seed=t.seed, weights=_draw_weights(cfg, data, console), natoms=data.train_natoms,
                               **budget)
    val_loader = (make_loader(data.val, t.batch_size, dtype, shuffle=False, num_workers=cfg.data.num_workers,
                              natoms=data.val_natoms, **budget)
                  if data.val is not None and len(data.val) > 0 else None)
    module.attach_samplers(train_loader.batch_sampler, val_loader.batch_sampler if val_loader else None)
    _announce(cfg, data, ckpt, console)
    trainer = build_trainer(cfg, val_loader is not None)
    init_val = None
    if init is not None and ckpt is None and val_loader is not None:  # where fine-tuning starts from
        init_val = float(trainer.validate(module, dataloaders=val_loader, verbose=False)[0]["val/loss"])
        _say(console, f"{cfg.init_from}: val/loss {init_val:.6g} before fine-tuning")
    t0 = time.perf_counter()
    trainer.fit(module, train_dataloaders=train_loader, val_dataloaders=val_loader,
                ckpt_path=str(ckpt) if ckpt else None)
    wall = time.perf_counter() - t0
    model_path = out / "model.pt"
    bad = [n for n, p in module.model.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        raise TrainingError(f"{len(bad)} weight tensors are not finite (e.g. {bad[0]}); no model was saved")
    if trainer.is_global_zero:
        save_model(module.model, model_path, cfg.to_dict(), meta=_model_meta(cfg, data))
        info = {"n_train": len(data.train), "n_val": len(data.val) if data.val is not None else 0,
                "global_step": trainer.global_step, "wall_s": wall,
                **_first_step(module.first_step_at, started), "resumed_from": str(ckpt) if ckpt else None,
                "atom_ref": {str(z): e for z, e in data.atom_ref.items()}, "model": module.model.config,
                "init_from": _abs(cfg.init_from), "init_val_loss": init_val}
        (out / "run.json").write_text(json.dumps(info, indent=1))
        return model_path
    return None


def _first_step(at: float | None, started: float | None) -> dict:
    """When this run's first optimiser step ended: as a Unix time and in seconds after ``train()`` was
    called (data indexes, references, model build and the first batch included; imports not)."""
    return {"first_step_unix": at, "first_step_s": at - started if at is not None and started else None}


def _check_rows(cfg: TrainConfig, data) -> None:
    """``loss.n_hr`` and ``loss.eigen_k`` against the data, as soon as its atom counts are known (before
    any step): more rows or modes than the largest molecule's 3N do not exist, so asking for them is
    a usage error (a smaller molecule of the batch gives all of its own)."""
    rows, lo = 3 * data.natoms_max, cfg.loss
    for name, value, used in (("n_hr", lo.n_hr, lo.hessian > 0), ("eigen_k", lo.eigen_k, lo.eigen > 0)):
        if used and value > rows:
            raise UsageError(f"loss.{name}={value} is more Hessian rows than the data's largest molecule has "
                             f"({data.natoms_max} atoms, 3N = {rows}); valid here: [{int(name == 'n_hr')}, {rows}]")


def _model_meta(cfg: TrainConfig, data) -> dict:
    """What model.pt records about its training data (elements = those with a fitted reference)."""
    from horm.data.io import level_of_theory

    return {"elements": sorted(data.atom_ref), "level_of_theory": level_of_theory(data.train.source),
            "data": {"train": str(cfg.data.train), "val": str(cfg.data.val) if cfg.data.val else None,
                     "n_train": len(data.train), "n_val": len(data.val) if data.val is not None else 0,
                     "init_from": _abs(cfg.init_from)}}


def _abs(path) -> str | None:
    """``path`` made absolute, so that a run's record still points at it from another folder."""
    return str(Path(path).resolve()) if path else None


def _load_init(cfg: TrainConfig):
    """(model, info) of ``cfg.init_from``, in the training precision."""
    from horm.models.files import load_model

    return load_model(cfg.init_from, dtype=_DTYPES[cfg.trainer.precision])


@rank_zero_only
def _say(console, msg: str) -> None:
    from rich.console import Console

    (console or Console()).print(msg, highlight=False)


def _draw_weights(cfg: TrainConfig, data, console):
    """``data.origin_weights`` as per-sample draw weights (None without), and one line on what
    share of the draws each weighted stage gets."""
    from horm.train.data import origin_weights

    w = origin_weights(data.train, cfg.data.origin_weights)
    if w is not None:
        from collections import Counter

        by_weight = Counter(w.tolist())
        share = ", ".join(f"weight {k:g}: {n} samples, {100 * k * n / w.sum():.1f}% of draws"
                          for k, n in sorted(by_weight.items(), reverse=True))
        _say(console, f"origin weights {dict(cfg.data.origin_weights)}: {share}")  # rank 0 only
    return w


@rank_zero_only
def _announce(cfg: TrainConfig, data, ckpt, console) -> None:
    from rich.console import Console

    console = console or Console()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / "config.yaml")
    cfg.print(console)
    nval = len(data.val) if data.val is not None else 0
    refs = ", ".join(f"Z={z}: {e:.4f}" for z, e in sorted(data.atom_ref.items()))
    console.print(f"train {len(data.train)} samples, val {nval}; reference energies (eV) {refs}")
    for note in data.notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)
    if data.outliers:
        console.print(f"[yellow]warning:[/yellow] {len(data.outliers)} sample(s) outside the label bounds kept "
                      f"(data.allow_outliers): {'; '.join(data.outliers[:3])}", highlight=False, soft_wrap=True)
    if ckpt:
        console.print(f"resuming from {ckpt}")
    elif cfg.init_from:
        console.print(f"fine-tuning from {cfg.init_from} (its architecture, weights and reference energies; "
                      f"the model section is ignored)", highlight=False)

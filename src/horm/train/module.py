"""The LightningModule that trains any horm Potential with the E-F or E-F-H loss.

- Optimiser AdamW; schedule cosine (per step, optional linear warm-up), ReduceLROnPlateau on
  ``val/loss`` (per epoch) or constant; gradient clipping is the Trainer's.
- Training and validation compute the same per-molecule loss (:func:`horm.train.losses.compute_loss`).
  Lightning runs validation under ``no_grad``; forces and Hessian rows need autograd, so
  ``validation_step`` re-enables it (and the Trainer runs with ``inference_mode=False``).
  Validation rows come from a generator seeded by the batch index, so successive
  validations compare the same rows.
- Hyper-parameters saved in every checkpoint: ``config`` (the TrainConfig dict),
  ``model_config`` (the architecture) and ``atom_ref`` ({Z: eV}); the references are also a
  buffer of the model, so they travel with the weights.

Model files (``model.pt``) are written and read by :mod:`horm.models.files`; its ``load_model``
rebuilds a trained model from a checkpoint, ``model.pt`` or run folder in one call.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch

from horm.errors import TrainingError
from horm.models.registry import build_model, build_model_from_config
from horm.train.config import TrainConfig
from horm.train.losses import compute_loss

__all__ = ["HormModule", "ParamSyncCheck", "SaveLastOnEnd", "param_fingerprint"]


class HormModule(L.LightningModule):
    """Wraps ``self.model`` (a Potential) with the loss, optimiser and schedule of a TrainConfig."""

    def __init__(self, config: dict, model_config: dict | None = None, atom_ref: dict | None = None):
        super().__init__()
        self.cfg = TrainConfig.from_dict(config)
        if model_config is None:
            m = self.cfg.model
            self.model = build_model(m.name, m.preset, **m.overrides)
            model_config = self.model.config
        else:
            self.model = build_model_from_config(model_config)
        if atom_ref:
            self.model.set_atom_ref({int(z): float(e) for z, e in atom_ref.items()})
        self.spec = self.cfg.loss_spec()
        self.save_hyperparameters({"config": self.cfg.to_dict(), "model_config": dict(model_config),
                                   "atom_ref": {int(z): float(e) for z, e in (atom_ref or {}).items()}})

    def forward(self, batch, **kw):
        return self.model(batch, **kw)

    # batches: sharded across ranks, resumed mid-epoch, label problems raised here ----------------
    _samplers: tuple = (None, None)
    _consumed = 0  # training batches of the current epoch this rank has run

    def attach_samplers(self, train_sampler, val_sampler=None) -> None:
        """The :class:`horm.data.sampler.BudgetBatchSampler` of the training (and validation)
        loader: sharded in :meth:`setup`, its place saved in every checkpoint and restored."""
        self._samplers = (train_sampler, val_sampler)

    def setup(self, stage: str) -> None:
        for s in self._samplers:
            if s is not None:
                s.shard(self.trainer.world_size, self.trainer.global_rank)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        s = self._samplers[0]
        epoch = s.current if s is not None else self.trainer.current_epoch
        checkpoint["horm_sampler"] = {"epoch": int(epoch), "consumed": int(self._consumed)}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if self.cfg.optim.schedule == "cosine":
            upgrade_cosine_state(checkpoint.get("lr_schedulers") or [])
        state = checkpoint.get("horm_sampler")
        if self._samplers[0] is not None and isinstance(state, dict):
            self._resumed = self._samplers[0].resume(int(state.get("epoch", 0)), int(state.get("consumed", 0)))

    def on_train_epoch_start(self) -> None:
        self._consumed = self.__dict__.pop("_resumed", 0)  # the first epoch of a resumed run goes on counting

    first_step_at: float | None = None  # time.time() at the end of this process's first optimiser step

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self.first_step_at is None:
            self.first_step_at = time.time()

    def on_before_batch_transfer(self, batch, dataloader_idx: int = 0):
        from horm.train.data import raise_batch_problems

        raise_batch_problems(batch)
        return batch

    def training_step(self, batch, batch_idx):
        self._consumed += 1
        out = compute_loss(self.model, batch, self.spec, training=True)
        if not torch.isfinite(out.total.detach()):
            parts = ", ".join(f"{k} {float(v.detach()):.3g}" for k, v in out.parts.items())
            raise TrainingError(f"non-finite loss {float(out.total.detach()):.3g} at step {self.global_step} "
                                f"({parts}); lower optim.lr or the loss weights; no model was saved")
        b = batch.num_graphs
        self.log("train/loss", out.total, batch_size=b, prog_bar=True)
        for k, v in out.parts.items():
            self.log(f"train/{k}", v, batch_size=b)
        return out.total

    def on_after_backward(self):
        """Stop at the first non-finite gradient (checked before clipping could hide it)."""
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        if grads and not bool(torch.stack([torch.isfinite(g).all() for g in grads]).all()):
            bad = next(n for n, p in self.model.named_parameters() if p.grad is not None
                       and not bool(torch.isfinite(p.grad).all()))
            raise TrainingError(f"non-finite gradient of {bad} at step {self.global_step}; lower optim.lr or "
                                "the loss weights; no model was saved")

    def validation_step(self, batch, batch_idx):
        g = torch.Generator().manual_seed(1_000_003 * self.cfg.trainer.seed + batch_idx)
        with torch.enable_grad():
            out = compute_loss(self.model, batch, self.spec, training=False, generator=g)
        b = batch.num_graphs
        self.log("val/loss", out.total, batch_size=b, prog_bar=True, sync_dist=True)
        for k, v in out.parts.items():
            self.log(f"val/{k}", v, batch_size=b, sync_dist=True)

    def configure_optimizers(self):
        o = self.cfg.optim
        opt = torch.optim.AdamW(self.model.parameters(), lr=o.lr, weight_decay=o.weight_decay)
        sched = None
        if o.schedule == "cosine":
            total = max(int(self.trainer.estimated_stepping_batches), 1)
            curve = functools.partial(cosine_factor, total=total, warmup=o.warmup_steps, floor=o.min_lr_ratio)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, curve)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
        if o.schedule == "plateau":
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=o.plateau_factor,
                                                               patience=o.plateau_patience)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val/loss",
                                                       "interval": "epoch", "strict": False}}
        if o.warmup_steps > 0:
            sched = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1e-3, total_iters=o.warmup_steps)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
        return opt


def cosine_factor(step: int, *, total: int, warmup: int, floor: float) -> float:
    """The learning rate of step ``step`` over ``optim.lr`` with ``schedule: cosine``: linear warmup
    from 1e-3 over ``warmup`` steps (at most ``total − 1``), then a half cosine from 1 down to
    ``floor`` (``min_lr_ratio``) at step ``total`` (``max_steps``), flat after it.

    A function of the step and this run's ``max_steps`` only: a run resumed with a larger
    ``max_steps`` follows the schedule of the new budget from its step on (a restored
    ``CosineAnnealingLR`` would keep the old period and climb back after it)."""
    warm = min(int(warmup), total - 1)
    if step < warm:
        return 1e-3 + (1.0 - 1e-3) * step / warm
    t = min(step - warm, total - warm) / max(total - warm, 1)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))


def upgrade_cosine_state(states: list[dict]) -> None:
    """Checkpoints written before :func:`cosine_factor` kept a ``SequentialLR``/``CosineAnnealingLR``
    state for the cosine schedule; the ``LambdaLR`` of :func:`cosine_factor` needs only the step, so such a state is
    rewritten in place to one at the same step (the optimiser's restored learning rate is kept)."""
    for st in states:
        if isinstance(st, dict) and "lr_lambdas" not in st and isinstance(st.get("last_epoch"), int):
            last_lr = st.get("_last_lr") or [0.0]
            base = [g.get("base_lrs", [None])[0] for g in st.get("_schedulers", []) if isinstance(g, dict)]
            base_lrs = st.get("base_lrs") or ([b for b in base if b is not None][:1] or last_lr)
            kept = {"last_epoch": st["last_epoch"], "_last_lr": last_lr, "base_lrs": base_lrs,
                    "_step_count": st["last_epoch"] + 1}
            st.clear()
            st.update(kept, lr_lambdas=[None])


def param_fingerprint(module: torch.nn.Module) -> tuple[str, float]:
    """(sha256 of all parameters as float64 bytes, their sum): equal iff the weights are equal."""
    h = hashlib.sha256()
    total = 0.0
    for name, p in sorted(module.named_parameters()):
        a = p.detach().cpu().double().numpy()
        h.update(name.encode())
        h.update(np.ascontiguousarray(a).tobytes())
        total += float(a.sum())
    return h.hexdigest(), total


class SaveLastOnEnd(L.Callback):
    """Write ``last.ckpt`` when training ends, also when max_steps is not a multiple of the
    checkpoint period, so a later ``resume=true`` with a larger budget continues from the end.
    Place it before an EMA callback so it saves the raw (not the averaged) current weights."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_train_end(self, trainer, pl_module):
        trainer.save_checkpoint(self.path, weights_only=False)


class ParamSyncCheck(L.Callback):
    """With several processes, every rank writes its weight fingerprint to ``out/ddp_sync/rank{r}.json``
    at the end of training, so DDP synchronisation can be checked from outside."""

    def __init__(self, out: str | Path):
        self.out = Path(out)

    def on_train_end(self, trainer, pl_module):
        if trainer.world_size <= 1:
            return
        digest, total = param_fingerprint(pl_module.model)
        d = self.out / "ddp_sync"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"rank{trainer.global_rank}.json").write_text(json.dumps(
            {"rank": trainer.global_rank, "world_size": trainer.world_size, "global_step": trainer.global_step,
             "sha256": digest, "param_sum": total}))

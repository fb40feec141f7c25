"""Assemble checkpoints in the Lightning layout that HORM's and HIP's training wrote.

Layout (what ``Trainer.save_checkpoint`` writes for a ``PotentialModule`` whose network is the
attribute ``potential``; checked against a real Lightning 2.x checkpoint): ``epoch``,
``global_step``, ``pytorch-lightning_version``, ``state_dict`` (``potential.*``), ``loops``,
``callbacks`` (ModelCheckpoint/EarlyStopping states with tensors), ``optimizer_states`` (a real
Adam state), ``lr_schedulers`` (StepLR), ``hparams_name`` and ``hyper_parameters``.
"""

from __future__ import annotations

from pathlib import Path

import torch


def _adam_state() -> dict:
    lin = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(lin.parameters(), lr=5e-4, amsgrad=True)
    lin(torch.ones(1, 3)).sum().backward()
    opt.step()
    return opt.state_dict()


def lightning_layout(state_dict: dict, hyper_parameters) -> dict:
    """The checkpoint dict: ``state_dict`` keys get the ``potential.`` prefix."""
    score = torch.tensor(0.1234)
    monitor = "ModelCheckpoint{'monitor': 'val-totloss', 'mode': 'min', 'every_n_train_steps': 0, " \
              "'every_n_epochs': 10, 'train_time_interval': None}"
    return {
        "epoch": 589,
        "global_step": 942_400,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": {f"potential.{k}": torch.as_tensor(v) for k, v in state_dict.items()},
        "loops": {"fit_loop": {"state_dict": {}, "epoch_loop.state_dict": {"_batches_that_stepped": 942_400},
                               "epoch_progress": {"total": {"ready": 590, "completed": 589}}}},
        "callbacks": {
            monitor: {"monitor": "val-totloss", "best_model_score": score, "best_model_path": "ckpt/ff-epoch=589.ckpt",
                      "current_score": score, "dirpath": "checkpoint/horm", "best_k_models": {"a.ckpt": score},
                      "kth_best_model_path": "", "kth_value": score, "last_model_path": ""},
            "EarlyStopping{'monitor': 'val-totloss', 'mode': 'min'}": {"wait_count": 3, "stopped_epoch": 0,
                                                                       "best_score": score, "patience": 1000},
        },
        "optimizer_states": [_adam_state()],
        "lr_schedulers": [{"step_size": 50, "gamma": 0.85, "base_lrs": [5e-4], "last_epoch": 11,
                           "_step_count": 12, "_get_lr_called_within_step": False, "_last_lr": [2.8e-4]}],
        "hparams_name": "kwargs",
        "hyper_parameters": hyper_parameters,
    }


def save_lightning_checkpoint(path: Path, state_dict: dict, hyper_parameters) -> Path:
    torch.save(lightning_layout(state_dict, hyper_parameters), path)
    return path

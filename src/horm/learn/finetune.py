"""Fine-tune every committee model on the grown store: warm start, fixed step budget, resumable.

Model i of round r trains in ``round_rr/finetune/m<i>/`` with ``horm train``'s
``init_from`` = its model of round r − 1 (architecture, weights and reference energies
kept), on the learner's whole store, for ``steps`` optimizer steps, seeded with
``seed + 1000·r + i`` so committee members keep differing. No validation split is held
out (the store is what was paid for); the held-out labelled split is evaluated after the
round. A folder with ``model.pt`` is done; one without it but with a readable checkpoint (a
kill during training) resumes from that checkpoint; any other folder is cleared and trained
again from the warm start.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence


def finetune_config(init_from: str, store: str, out: Path, steps: int, seed: int, overrides: Sequence[str] = ()):
    """The :class:`horm.train.config.TrainConfig` of one fine-tuning run."""
    from horm.train.config import TrainConfig

    base = ["trainer.progress_bar=false", "data.val_fraction=0", "optim.warmup_steps=0",
            f"trainer.ckpt_every_n_steps={max(1, min(steps, 100))}", f"trainer.seed={seed}"]
    fixed = [f"init_from={init_from}", f"data.train={store}", f"out={out}", f"trainer.max_steps={steps}",
             "trainer.max_epochs=-1"]
    return TrainConfig.from_yaml(None, base + list(overrides) + fixed)


def finetune_models(models: Sequence[str], store: str, round_dir: Path, round_no: int, steps: int,
                    seed: int = 0, overrides: Sequence[str] = ()) -> list[str]:
    """Fine-tune each of ``models`` on ``store``; returns the new model files (the old ones when
    ``steps`` is 0)."""
    from rich.console import Console

    from horm.train.run import find_resume_checkpoint, train

    if steps <= 0:
        return [str(m) for m in models]
    out = []
    for i, m in enumerate(models):
        d = Path(round_dir) / "finetune" / f"m{i}"
        if not (d / "model.pt").is_file():
            resume = find_resume_checkpoint(d) is not None
            if not resume:
                shutil.rmtree(d, ignore_errors=True)
            cfg = finetune_config(str(m), str(store), d, steps, seed + 1000 * round_no + i,
                                  list(overrides) + [f"resume={str(resume).lower()}"])
            train(cfg, console=Console(quiet=True))  # its config.yaml and run.json say what ran
        out.append(str((d / "model.pt").resolve()))
    return out

"""The committee's predictions for a pool of geometries, scored by disagreement.

Two kinds of committee (``CommitteeKind``):

- ``models``: the M loaded models (differing in seed, data or architecture); each gives
  forces and its Hessian (autograd, or the direct head of a ``hessian_head`` model).
- ``head``: each model with a direct Hessian head (``model.hessian_mode == "direct"``,
  :mod:`horm.models.hessian_head`) against its own autograd Hessian, i.e. the Jacobian of
  the same model's forces (``model(..., jacobian_hessian=True)``). A geometry's score is
  the mean over those models. Forces agree by construction here, so the ``forces`` score
  is refused.

Models are loaded once (float64, CPU by default) and run one geometry at a time, under
:func:`horm.runtime.thread_limit`.
"""

from __future__ import annotations

from typing import Literal, Sequence, get_args

import numpy as np

from horm.data.sample import Sample
from horm.errors import UsageError
from horm.learn.scoring import ScoreKind, committee_score

CommitteeKind = Literal["models", "head"]
COMMITTEE_KINDS: tuple[str, ...] = get_args(CommitteeKind)


def load_committee(paths: Sequence[str], device: str = "cpu", dtype: str = "float64") -> list:
    """The models at ``paths`` (model files or run folders), in eval mode."""
    from horm.models.files import load_model

    return [load_model(p, device=device, dtype=dtype)[0] for p in paths]


def _predict(model, sample: Sample, autograd: bool) -> tuple[np.ndarray, np.ndarray]:
    """(forces (N, 3) eV/Å, Hessian (3N, 3N) eV/Å²) of one model at one geometry."""
    import torch

    from horm.data.batch import collate

    p = next(model.parameters())
    batch = collate([sample], dtype=p.dtype).to(p.device)
    with torch.enable_grad():
        res = model(batch, compute_forces=True, compute_hessian=True, create_graph=False, jacobian_hessian=autograd)
    n3 = 3 * len(sample.numbers)
    h = res["hessian"]
    h = h[0] if isinstance(h, (list, tuple)) else h
    h = h.detach().cpu().double().numpy().reshape(-1)[: n3 * n3].reshape(n3, n3)
    return res["forces"].detach().cpu().double().numpy().reshape(-1, 3), h


def committee_predictions(models: Sequence, sample: Sample, kind: CommitteeKind = "models"
                          ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Groups of stacked predictions [(forces (M, N, 3), Hessians (M, 3N, 3N)), ...] at ``sample``.

    ``models``: one group of all models; ``head``: one group (direct, autograd) per model
    with a direct Hessian head.
    """
    if kind not in COMMITTEE_KINDS:
        raise UsageError(f"committee {kind!r} is not valid; choose one of {', '.join(COMMITTEE_KINDS)}")
    if kind == "models":
        if len(models) < 2:
            raise UsageError(f"a committee of models needs at least 2 models, got {len(models)}")
        preds = [_predict(m, sample, autograd=m.hessian_mode != "direct") for m in models]
        return [(np.stack([f for f, _ in preds]), np.stack([h for _, h in preds]))]
    heads = [m for m in models if m.hessian_mode == "direct"]
    if not heads:
        raise UsageError("committee 'head' needs a model with a direct Hessian head (hessian_head); none given")
    groups = []
    for m in heads:
        (fd, hd), (fa, ha) = _predict(m, sample, autograd=False), _predict(m, sample, autograd=True)
        groups.append((np.stack([fd, fa]), np.stack([hd, ha])))
    return groups


def score_pool(models: Sequence, samples: Sequence[Sample], score: ScoreKind = "eigen",
               kind: CommitteeKind = "models", k: int = 1, vec_weight: float = 1.0,
               threads: int | None = None) -> np.ndarray:
    """The committee score of every sample (see :mod:`horm.learn.scoring`), shape (len(samples),)."""
    from horm.runtime import auto_threads, thread_limit

    if kind == "head" and score == "forces":
        raise UsageError("score 'forces' needs a committee of models: a head and its own autograd Hessian "
                         "share the same forces")
    out = np.zeros(len(samples))
    with thread_limit(auto_threads(threads, max((len(s.numbers) for s in samples), default=1))):
        for i, s in enumerate(samples):
            groups = committee_predictions(models, s, kind)
            out[i] = np.mean([committee_score(score, f, h, s.pos, k, vec_weight) for f, h in groups])
    return out

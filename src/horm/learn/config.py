"""``LearnSettings``: everything one active-learning run needs, checked at construction.

Every bad value is a one-line :class:`horm.errors.UsageError` naming the field. The
settings are saved in ``OUT/state.json``; a resumed run with other settings is refused
(except for ``rounds``, which may grow, and the compute options ``workers``, ``ray``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, Optional

from horm.errors import UsageError
from horm.learn.committee import COMMITTEE_KINDS, CommitteeKind
from horm.learn.scoring import SCORE_KINDS, ScoreKind
from horm.learn.selection import STRATEGIES, Strategy

Engine = Literal["xtb", "dft"]
RESUMABLE_CHANGES = ("rounds", "workers", "ray", "compare")  # fields a resumed run may change


@dataclass
class LearnSettings:
    reactions: str  # folder of training reaction *.xyz (reactant, product): the pool's searches
    models: tuple[str, ...]  # committee: model files, run folders or shipped names (>= 2 for committee "models")
    out: str  # run folder: state.json, store.hstore, round_NN/, report.md
    engine: Engine = "xtb"  # labelling engine (and the reference TS search on held-out reactions)
    rounds: int = 1  # active-learning rounds
    budget: int = 10  # labels per round
    strategy: Strategy = "committee"  # "committee" (top scores) | "random" (the baseline) | "window"
    trust_lo: Optional[float] = None  # "window": scores in [trust_lo, trust_hi] are drawn at random (score unit)
    trust_hi: Optional[float] = None  # "window": scores above are never picked (broken geometries)
    score: ScoreKind = "eigen"  # "eigen" | "hessian" | "forces" (horm.learn.scoring)
    committee: CommitteeKind = "models"  # "models" | "head" (direct head vs its autograd Hessian)
    eigen_k: int = 1  # lowest modes compared by the eigen score
    eigvec_weight: float = 1.0  # eV/Å²: weight of 1 − |cos| between lowest eigenvectors
    min_rmsd: float = 0.05  # Å: no two picks, and no pick and stored geometry, closer than this
    seed_store: Optional[str] = None  # labelled seed data (copied to OUT/store.hstore, never modified)
    heldout_reactions: Optional[str] = None  # folder of reaction *.xyz never labelled: TS evaluation
    heldout_store: Optional[str] = None  # held-out labelled split: Hessian MAE
    eval_max_samples: Optional[int] = 200  # samples of heldout_store evaluated per round
    pool_reactions: Optional[int] = None  # training reactions searched per round (seeded pick; None: all)
    search_models: int = 1  # committee models that run TS searches for the pool
    eval_models: int = 1  # committee models whose held-out TS searches are counted (the curve is their mean)
    pool_max: Optional[int] = 1000  # visited geometries scored per round (a seeded subset; None: all)
    finetune_steps: int = 200  # optimizer steps per model and round (warm start from the last round)
    train_overrides: tuple[str, ...] = ()  # extra `horm train` key=value settings for fine-tuning
    ts_settings: dict = field(default_factory=dict)  # TS workflow settings (path/tsopt/irc sections)
    engine_settings: dict = field(default_factory=dict)  # labelling engine settings
    dtype: str = "float32"  # the committee's precision in TS searches (float32: ~2.5x cheaper Hessians)
    workers: int = 1  # parallel TS searches / labels (processes, or Ray actors)
    ray: Optional[str] = None  # None: this machine; "local" or a Ray cluster address
    timeout: float = 600.0  # seconds per TS search (reaction)
    label_timeout: Optional[float] = None  # seconds per label
    charge: Optional[int] = None  # overrides the reaction files' charge
    multiplicity: Optional[int] = None  # overrides the reaction files' multiplicity
    seed: int = 0  # seeds the pool pick, the random strategy and the fine-tuning
    compare: Optional[str] = None  # another learn run folder drawn in report.md (e.g. the random baseline)

    def __post_init__(self):
        self.models = tuple(str(m) for m in self.models)
        self.train_overrides = tuple(self.train_overrides)
        self._check_choices()
        self._check_numbers()
        self._check_paths()

    def _check_choices(self) -> None:
        for name, value, valid in (("engine", self.engine, ("xtb", "dft")), ("strategy", self.strategy, STRATEGIES),
                                   ("dtype", self.dtype, ("float32", "float64")),
                                   ("score", self.score, SCORE_KINDS), ("committee", self.committee, COMMITTEE_KINDS)):
            if value not in valid:
                raise UsageError(f"{name} {value!r} is not valid; choose one of {', '.join(valid)}")
        if self.committee == "models" and len(self.models) < 2:
            raise UsageError(f"a committee of models needs at least 2 --models, got {len(self.models)}")
        if self.committee == "head" and self.score == "forces":
            raise UsageError("score 'forces' needs committee 'models' (a head and its autograd share forces)")
        if not self.models:
            raise UsageError("give at least one model (--models)")

    def _check_numbers(self) -> None:
        ints = (("rounds", self.rounds, 1), ("budget", self.budget, 1), ("eigen_k", self.eigen_k, 1),
                ("search_models", self.search_models, 1), ("eval_models", self.eval_models, 1),
                ("finetune_steps", self.finetune_steps, 0),
                ("workers", self.workers, 1))
        for name, value, lo in ints:
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise UsageError(f"{name} must be an integer >= {lo}, got {value!r}")
        for name, value in (("pool_reactions", self.pool_reactions), ("eval_max_samples", self.eval_max_samples),
                            ("pool_max", self.pool_max)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise UsageError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("search_models", "eval_models"):
            if getattr(self, name) > len(self.models):
                raise UsageError(f"{name}={getattr(self, name)} but only {len(self.models)} models")
        for name, value, lo in (("min_rmsd", self.min_rmsd, 0.0), ("eigvec_weight", self.eigvec_weight, 0.0)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= lo):
                raise UsageError(f"{name} must be a finite number >= {lo}, got {value!r}")
        self._check_trust()
        for name, value in (("timeout", self.timeout), ("label_timeout", self.label_timeout)):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise UsageError(f"{name} must be > 0 seconds, got {value!r}")

    def _check_trust(self) -> None:
        given = (self.trust_lo is not None, self.trust_hi is not None)
        if self.strategy != "window":
            if any(given):
                raise UsageError(f"trust_lo/trust_hi belong to strategy 'window', not {self.strategy!r}")
            return
        if not all(given):
            raise UsageError("strategy 'window' needs both trust_lo and trust_hi (--trust LO HI)")
        lo, hi = self.trust_lo, self.trust_hi
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (lo, hi)) \
                or not 0 <= lo <= hi:
            raise UsageError(f"trust window must satisfy 0 <= trust_lo <= trust_hi, got [{lo!r}, {hi!r}]")
        self.trust_lo, self.trust_hi = float(lo), float(hi)

    def _check_paths(self) -> None:
        from horm.pretrained import resolve
        from horm.ts.workflow import RunSettings

        self.models = tuple(str(resolve(m)) for m in self.models)  # a shipped name → its file
        if not Path(self.reactions).is_dir():
            raise UsageError(f"{self.reactions}: not a folder of reaction files")
        for m in self.models:
            if not Path(m).exists():
                raise UsageError(f"--models {m}: no such file or folder")
        for name in ("seed_store", "heldout_store", "heldout_reactions", "compare"):
            p = getattr(self, name)
            if p is not None and not Path(p).exists():
                raise UsageError(f"{name} {p}: no such file or folder")
        if self.heldout_reactions is not None and Path(self.heldout_reactions).resolve() == \
                Path(self.reactions).resolve():
            raise UsageError("heldout_reactions must not be the training reaction folder")
        RunSettings.from_dict(self.ts_settings)  # raises on a bad key or value
        # absolute paths: a resumed run from another working directory is the same run
        self.models = tuple(str(Path(m).resolve()) for m in self.models)
        for name in ("reactions", "out", "seed_store", "heldout_store", "heldout_reactions", "compare"):
            if getattr(self, name) is not None:
                setattr(self, name, str(Path(getattr(self, name)).resolve()))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["models"], d["train_overrides"] = list(self.models), list(self.train_overrides)
        return d

    def check_resume(self, saved: dict) -> None:
        """Refuse to resume a run that was started with other settings."""
        now = self.to_dict()
        diff = sorted(k for k in now if k not in RESUMABLE_CHANGES and saved.get(k) != now[k])
        if diff:
            raise UsageError(f"{self.out}: holds a learn run with other settings ({', '.join(diff)}); "
                             f"use another --out")

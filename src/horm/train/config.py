"""Typed training configuration: dataclasses, loaded from YAML, overridable with ``key=value``.

Sections (every field has a comment; see ``TrainConfig``): ``model``, ``data``, ``loss``,
``optim``, ``trainer``, plus top-level ``out``, ``resume`` and ``init_from``. Overrides use dotted keys:
``loss.hessian=0 optim.lr=1e-3 model.overrides.hidden_channels=64 resume=true``. Values are
parsed as YAML scalars and then checked against the field's type; a bad key or value raises
a one-line ``UsageError`` that lists the valid keys or values.

The defaults train with the E-F-H loss (Eq. 3) and HORM's weights; set ``loss.hessian=0``
for the E-F baseline (Eq. 2).
"""

from __future__ import annotations

import copy
import re
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import yaml

from horm.data.sample import MAX_ATOMS
from horm.errors import DataError, UsageError
from horm.safe_io import read_input_bytes
from horm.settings import check_fields as _check_fields
from horm.settings import coerce as _coerce
from horm.settings import field_range as _field_range
from horm.settings import field_types as _field_types
from horm.settings import parse_scalar as _parse_scalar
from horm.settings import ranged

# every numeric field states its range (interval notation, printed by a refused value's error)
MAX_CONFIG_BYTES = 16 << 20  # a training config is a few KB; more is not a config
SEED_RANGE = "[0, 4294967295]"  # seeds of numpy and Lightning are unsigned 32-bit integers
WEIGHT_RANGE = "[0, inf)"  # loss weights
Precision = Literal["float32", "float64"]
Schedule = Literal["cosine", "plateau", "constant"]
Strategy = Literal["auto", "ddp", "ddp_spawn"]
Accelerator = Literal["auto", "cpu", "gpu"]
RowVjp = Literal["auto", "vmap", "loop"]


@dataclass
class ModelSection:
    name: str = "leftnet"  # registered model name (horm.models.registry.list_models())
    preset: str = "tiny"  # "tiny" | "small" (~2 h on 2 CPU cores) | "paper" | "horm"
    overrides: dict = field(default_factory=dict)  # architecture fields replacing the preset's


@dataclass
class DataSection:
    train: Optional[str] = None  # training data: HORM LMDB (file/dir), horm store, or xyz
    val: Optional[str] = None  # validation data; None: a reaction-level split of ``train``
    val_fraction: float = ranged(0.1, "[0, 1)")  # share of reactions held out when ``val`` is None
    split_seed: int = ranged(0, SEED_RANGE)  # seed of the reaction split
    max_train: Optional[int] = ranged(None, "[1, inf)")  # use at most this many training samples (first ones after the split)
    max_val: Optional[int] = ranged(None, "[0, inf)")  # use at most this many validation samples
    ref_samples: int = ranged(20000, "[1, inf)")  # samples used to fit per-element reference energies
    num_workers: int = ranged(0, "[0, 256]")  # DataLoader workers
    energy_key: Optional[str] = None  # xyz/ASE input: field holding the energy (e.g. REF_energy); None: "energy"
    forces_key: Optional[str] = None  # xyz/ASE input: field holding the forces (e.g. REF_forces); None: "forces"
    hessian_key: Optional[str] = None  # xyz/ASE input: field of the flattened Hessian (e.g. REF_hessian)
    allow_outliers: bool = False  # train on labels outside horm.data.plausibility's bounds (never NaN/inf or |E|/N > 1e7 eV)
    # draw training samples by sampler stage: {origin prefix: weight}, e.g. {ts: 10, irc: 2}
    # (horm.data.io.origin_matches; the longest matching prefix wins; unmatched samples weigh 1)
    origin_weights: dict = field(default_factory=dict)


@dataclass
class LossSection:
    energy: float = ranged(4.0, WEIGHT_RANGE)  # α, weight of the energy term (HORM: 4)
    forces: float = ranged(100.0, WEIGHT_RANGE)  # β, weight of the force term (HORM: 100)
    hessian: float = ranged(4.0, WEIGHT_RANGE)  # γ, weight of the sampled Hessian-row term (HORM: 4); 0 gives E-F
    full_hessian: float = ranged(0.0, WEIGHT_RANGE)  # weight of a full-Hessian term (direct Hessian heads)
    energy_metric: str = "l1"  # "l1" | "mse"
    forces_metric: str = "l1"  # "l1" | "l2" | "mse"
    hessian_metric: str = "per_atom_l2"  # "per_atom_l2" | "l2" | "l1" | "mse"
    full_hessian_metric: str = "l1"  # "l1" | "mse"
    eigen: float = ranged(1.0, WEIGHT_RANGE)  # weight of the eigen-subspace term (HIP: 1); active only when eigen_k > 0
    eigen_k: int = ranged(0, f"[0, {3 * MAX_ATOMS}]")  # k lowest true Hessian modes in |V_kᵀ Ĥ V_k − Λ_k| (HIP: 8); 0: off
    n_hr: int = ranged(1, f"[1, {3 * MAX_ATOMS}]")  # N_HR, Hessian rows sampled per molecule and step
    hessian_divisor: float = ranged(10.0, "(0, inf)")  # the row term is divided by this (HORM's code: 10)
    row_vjp: RowVjp = "auto"  # how the N_HR row VJPs run: "auto" (loop on CPU, vmap on GPU) | "vmap" | "loop"


@dataclass
class OptimSection:
    lr: float = ranged(5e-4, "(0, 10]")  # AdamW learning rate
    weight_decay: float = ranged(0.0, "[0, inf)")  # AdamW weight decay
    schedule: Schedule = "cosine"  # "cosine" (to lr·min_lr_ratio at max_steps) | "plateau" | "constant"
    warmup_steps: int = ranged(0, "[0, inf)")  # linear warm-up steps before the schedule
    min_lr_ratio: float = ranged(0.01, "[0, 1]")  # cosine floor as a fraction of lr
    plateau_factor: float = ranged(0.5, "(0, 1)")  # ReduceLROnPlateau factor (on val/loss)
    plateau_patience: int = ranged(5, "[0, inf)")  # ReduceLROnPlateau patience, in validations
    grad_clip: Optional[float] = ranged(10.0, "[0, inf)")  # gradient-norm clip; None: off
    ema_decay: Optional[float] = ranged(None, "(0, 1)")  # EMA of the weights (e.g. 0.999); None: off


@dataclass
class TrainerSection:
    max_steps: int = ranged(1000, "[-1, inf)")  # optimizer steps (-1: use max_epochs)
    max_epochs: int = ranged(-1, "[-1, inf)")  # epochs (-1: use max_steps)
    max_time: Optional[str] = None  # wall-clock budget "DD:HH:MM:SS", summed over resumed sessions; None: none
    batch_size: int = ranged(8, "[1, inf)")  # molecules per batch and device
    batch_max_atoms: Optional[int] = ranged(None, "[1, inf)")  # atoms per batch and device; None: no atom budget
    batch_max_hessian: Optional[int] = ranged(None, "[9, inf)")  # Hessian entries Σ(3n)² per batch; None: no budget
    precision: Precision = "float32"  # "float32" | "float64"
    devices: int = ranged(1, "[1, 1024]")  # processes/devices
    strategy: Strategy = "auto"  # "auto" | "ddp" | "ddp_spawn" (CPU DDP uses gloo)
    accelerator: Accelerator = "auto"  # "auto" | "cpu" | "gpu"
    seed: int = ranged(0, SEED_RANGE)  # seed of weights, shuffling and row sampling
    ckpt_every_n_steps: int = ranged(100, "[1, inf)")  # write a checkpoint (and last.ckpt) every n steps
    val_every_n_steps: Optional[int] = ranged(None, "[1, inf)")  # validate every n steps; None: once per epoch
    limit_val_batches: Optional[int] = ranged(None, "[1, inf)")  # validate on at most this many batches
    log_every_n_steps: int = ranged(10, "[1, inf)")  # logging period
    progress_bar: bool = True  # rich progress bar


@dataclass
class TrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    loss: LossSection = field(default_factory=LossSection)
    optim: OptimSection = field(default_factory=OptimSection)
    trainer: TrainerSection = field(default_factory=TrainerSection)
    out: str = "runs/horm"  # run directory: config.yaml, checkpoints/, logs/, model.pt
    resume: bool = False  # continue from out/checkpoints/last.ckpt (or the newest loadable one)
    init_from: Optional[str] = None  # fine-tune: start from this model's architecture, weights and atom references

    # --- construction ------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict | None) -> "TrainConfig":
        cfg = cls()
        for key, value in _flatten(d or {}).items():
            cfg.set(key, value)
        cfg.validate()
        return cfg

    @classmethod
    def from_yaml(cls, path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> "TrainConfig":
        d: dict = {}
        if path is not None:
            p = Path(path)
            if not p.exists():
                raise UsageError(f"{p}: config file not found")
            try:
                raw = read_input_bytes(p, limit=MAX_CONFIG_BYTES)  # a regular file, capped: never /dev/zero
            except DataError as exc:
                raise UsageError(str(exc)) from None
            try:
                d = yaml.safe_load(raw.decode("utf-8")) or {}
            except yaml.YAMLError as exc:
                raise UsageError(f"{p}: not valid YAML ({str(exc).splitlines()[0]})") from None
            except UnicodeDecodeError as exc:
                raise UsageError(f"{p}: not a YAML text file (byte {exc.start} is not UTF-8)") from None
            except OSError as exc:
                raise UsageError(f"{p}: cannot read the config ({exc.strerror or exc})") from None
            if not isinstance(d, dict):
                raise UsageError(f"{p}: top level must be a mapping of sections")
        cfg = cls.from_dict(d)
        cfg.apply_overrides(overrides)
        return cfg

    def apply_overrides(self, overrides) -> "TrainConfig":
        """Apply ``key=value`` strings; all or nothing (a bad one leaves ``self`` unchanged)."""
        new = copy.deepcopy(self)
        for item in overrides:
            if "=" not in item:
                raise UsageError(f"override {item!r} is not key=value (e.g. optim.lr=1e-3)")
            key, raw = item.split("=", 1)
            new.set(key.strip(), _parse_scalar(raw))
        new.validate()
        self.__dict__.update(new.__dict__)
        return self

    def set(self, key: str, value: Any) -> None:
        """Set a dotted key (``optim.lr``) with type checking; ``model.overrides.X`` is free-form."""
        parts = key.split(".")
        obj: Any = self
        for i, name in enumerate(parts):
            if isinstance(obj, dict):  # model.overrides.<field>
                if i != len(parts) - 1:
                    raise UsageError(f"config key {key!r}: overrides are one level deep")
                obj[name] = value
                return
            valid = [f.name for f in dataclasses.fields(obj)]
            if name not in valid:
                where = ".".join(parts[:i]) or "top level"
                raise UsageError(f"unknown config key {key!r} ({where}); valid: {', '.join(valid)}")
            if i == len(parts) - 1:
                ftype = _field_types(type(obj))[name]
                if dataclasses.is_dataclass(ftype):
                    raise UsageError(f"config key {key!r} names a section, give a field (e.g. {key}.<field>)")
                setattr(obj, name, _coerce(ftype, value, key, _field_range(type(obj), name)))
                return
            obj = getattr(obj, name)
        raise UsageError(f"config key {key!r} names a section, give a field (e.g. {key}.<field>)")

    def validate(self) -> None:
        """Every field's type and range (declared next to it), then the rules between fields and
        the ``model.overrides`` against the model's own config; cheap, before any data is read."""
        from horm.train.losses import VALID_METRICS

        _check_fields(self, "")
        for fname, metric in (("energy", self.loss.energy_metric), ("forces", self.loss.forces_metric),
                              ("hessian_rows", self.loss.hessian_metric), ("hessian", self.loss.full_hessian_metric)):
            if metric not in VALID_METRICS[fname]:
                raise UsageError(f"loss metric {metric!r} for {fname}; valid: {', '.join(VALID_METRICS[fname])}")
        t = self.trainer
        checks = [
            (t.max_steps > 0 or t.max_epochs > 0, "set trainer.max_steps or trainer.max_epochs to a positive value"),
            (t.max_steps != 0 and t.max_epochs != 0,
             "trainer.max_steps and trainer.max_epochs are -1 (unbounded) or >= 1, not 0"),
            (t.max_time is None or re.fullmatch(r"\d+:\d\d:\d\d:\d\d", t.max_time),
             f"trainer.max_time={t.max_time!r} is not DD:HH:MM:SS (e.g. 00:02:00:00 for 2 h)"),
        ]
        for ok, msg in checks:
            if not ok:
                raise UsageError(msg)
        for k, w in self.data.origin_weights.items():
            if not str(k).strip() or isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w < float("inf"):
                raise UsageError(f"data.origin_weights.{k}={w!r}: give a stage prefix and a finite weight >= 0")
        if not self.init_from:  # fine-tuning takes the architecture of init_from; the model section is ignored
            from horm.train.model_options import check_model_section

            check_model_section(self.model)

    # --- output ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_yaml())

    def print(self, console=None) -> None:
        """Print the config as a rich tree (one branch per section)."""
        from rich.console import Console
        from rich.tree import Tree

        console = console or Console()
        tree = Tree("[bold]horm train config[/bold]")
        for name, val in self.to_dict().items():
            if isinstance(val, dict):
                br = tree.add(f"[cyan]{name}[/cyan]")
                for k, v in val.items():
                    br.add(f"{k} = {v!r}")
            else:
                tree.add(f"[cyan]{name}[/cyan] = {val!r}")
        console.print(tree)

    def loss_spec(self):
        """The :class:`horm.train.losses.LossSpec` this config describes."""
        from horm.train.losses import LossSpec, LossTerm

        lo = self.loss
        terms = [LossTerm("energy", lo.energy_metric, lo.energy), LossTerm("forces", lo.forces_metric, lo.forces),
                 LossTerm("hessian_rows", lo.hessian_metric, lo.hessian),
                 LossTerm("hessian", lo.full_hessian_metric, lo.full_hessian), LossTerm("eigen", "l1", lo.eigen)]
        return LossSpec(tuple(terms), n_hr=lo.n_hr, hessian_divisor=lo.hessian_divisor, row_vjp=lo.row_vjp,
                        eigen_k=lo.eigen_k)


# --- helpers --------------------------------------------------------------------------------------
def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and key != "model.overrides":
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out

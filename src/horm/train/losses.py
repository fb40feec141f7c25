"""The E-F loss (Eq. 2) and the E-F-H loss (Eq. 3) of HORM, built from (field, metric, weight) terms.

Per molecule b with n atoms (targets without hat, predictions with hat)::

    E-F   = α·d(E, Ê) + β·d(F, F̂)                                          (Eq. 2)
    E-F-H = E-F + γ · (1/s) Σ_k d(H_{j_k}, −∂F̂_{j_k}/∂r) / hessian_divisor  (Eq. 3)

where j_1..j_s are s = N_HR distinct rows drawn uniformly per molecule and
per step (:func:`horm.hessian.autograd.sample_hessian_rows`: one batched one-hot VJP per k
gives row k of every molecule at once). The batch loss is the mean over molecules of these
per-molecule values, in training and in validation alike.

Metrics ``d`` (per molecule):

- energy (eV): ``l1`` |ΔE|, ``mse`` ΔE².
- forces (eV/Å): ``l1`` mean |ΔF| over the 3n components (HORM's code: ``nn.L1Loss``);
  ``l2`` mean over atoms of ‖ΔF_i‖₂ (Eq. 2 as written); ``mse`` mean ΔF² over components.
- Hessian rows (eV/Å²), Δ = H_row + ∂F̂_row/∂r of shape (n, 3) per row:
  ``per_atom_l2`` Σ_atoms ‖Δ_a‖₂ (HORM's code: ``torch.norm(jac − true_jac, p=2, dim=-1)
  .sum(dim=1)``, i.e. the 3-vector of each atom's columns gets an L2 norm and the atoms
  are summed); ``l2`` ‖Δ‖₂ of the whole row (Eq. 3 as written); ``l1`` mean |Δ| over the 3n
  entries; ``mse`` mean Δ². The row term is divided by ``hessian_divisor``: HORM's
  ``get_force_jac_loss`` divides by 10 (default 10 here; with γ = 4 the effective
  weight of the per-atom-L2 sum is 0.4, exactly HORM's).
- full Hessian (eV/Å², for direct Hessian heads that output ``hessian`` flat blocks):
  ``l1`` mean |ΔH| over the (3n)² entries; ``mse`` mean ΔH².
- eigen-subspace (eV/Å², HIP's term; ``eigen_k`` = k > 0 switches it on): with H = V Λ Vᵀ the
  true Hessian and V_k, Λ_k its k lowest eigenpairs (Cartesian, not projected, as in HIP),
  ``l1`` mean |V_kᵀ Ĥ V_k − Λ_k| over the k² entries (k capped at 3n). It asks the predicted
  Hessian to act like the true one on the soft modes a saddle search follows; the target
  eigendecomposition carries no gradient, so nothing backpropagates through ``eigh``. It
  needs the full Ĥ: one head evaluation for direct heads, 3n VJPs for autograd models.

Models with a direct Hessian head (``model.hessian_mode == "direct"``, e.g. ``hessian_head``)
return ``hessian`` from ``compute_hessian=True`` without autograd, so the full-Hessian term
costs one head evaluation, not 3n VJPs. For them a ``hessian_rows`` term reads its rows out
of that predicted Hessian (same rows, same metric) instead of differentiating the forces.

Defaults follow HORM's released code: α = 4 (energy), β = 100 (forces), γ = 4 (Hessian);
L1 on energy and forces, per-atom L2 on Hessian rows; N_HR = 1.

Energy target: models output *total* energies (Σ atom_ref[Z] is added inside the model,
see :mod:`horm.models.base`), so |E − Ê| equals |(E − Σref) − (Ê − Σref)|: the network
learns the referenced energy while the loss reads totals. The references are fitted on the
training split (:func:`horm.data.refs.fit_atom_references`) by the trainer.

The s row VJPs run as a Python loop on CPU and under vmap on GPU by default (``row_vjp``):
on CPU vmap over create_graph VJPs was slower (benchmarks/train_step.py; LEFTNet "horm"
preset, 8 molecules: N_HR = 2 extra cost 10.6 s with vmap vs 8.1 s with the loop).

HORM additionally down-weights molecules whose sampled label rows exceed 10⁴ eV/Å² by 1e-8;
``max_hessian_label`` reproduces that filter (default off: None).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import torch

from horm.data.batch import Batch, gather_hessian_rows
from horm.errors import UsageError
from horm.hessian.autograd import draw_row_indices, sample_hessian_rows
from horm.models.graph import scatter_mean, scatter_sum
from horm.units import UNITS as QUANTITY_UNITS

LossField = Literal["energy", "forces", "hessian_rows", "hessian", "eigen"]
LossMetric = Literal["l1", "l2", "mse", "per_atom_l2"]
LOSS_FIELDS = ("energy", "forces", "hessian_rows", "hessian", "eigen")
VALID_METRICS: dict[str, tuple[str, ...]] = {
    "energy": ("l1", "mse"),
    "forces": ("l1", "l2", "mse"),
    "hessian_rows": ("per_atom_l2", "l2", "l1", "mse"),
    "hessian": ("l1", "mse"),
    "eigen": ("l1",),
}
_H = QUANTITY_UNITS["hessian"]
UNITS = {"energy": QUANTITY_UNITS["energy"], "forces": QUANTITY_UNITS["forces"], "hessian_rows": _H, "hessian": _H,
         "eigen": _H}  # each loss term's unit, from horm.units
ROW_VJP = ("auto", "vmap", "loop")
HORM_HESSIAN_DIVISOR = 10.0  # HORM's get_force_jac_loss: loss / num_molecules / 10


@dataclass(frozen=True)
class LossTerm:
    """One weighted term: ``field`` compared with ``metric``, times ``weight``."""

    field: str  # "energy" | "forces" | "hessian_rows" | "hessian" | "eigen"
    metric: str  # see VALID_METRICS[field]
    weight: float  # ≥ 0; a zero weight switches the term (and its cost) off

    def __post_init__(self):
        if self.field not in LOSS_FIELDS:
            raise UsageError(f"unknown loss field {self.field!r}; valid: {', '.join(LOSS_FIELDS)}")
        if self.metric not in VALID_METRICS[self.field]:
            raise UsageError(f"unknown metric {self.metric!r} for {self.field}; "
                             f"valid: {', '.join(VALID_METRICS[self.field])}")
        if not float(self.weight) >= 0.0:
            raise UsageError(f"loss weight for {self.field} must be >= 0, got {self.weight}")


@dataclass
class LossSpec:
    """A full loss: its terms plus the Hessian-row sampling settings."""

    terms: tuple[LossTerm, ...]
    n_hr: int = 1  # N_HR, rows sampled per molecule and step
    hessian_divisor: float = HORM_HESSIAN_DIVISOR  # divides the hessian_rows term (HORM: 10)
    max_hessian_label: float | None = None  # HORM's filter: rows with |H| above this get weight 1e-8
    row_vjp: str = "auto"  # "auto" (loop on CPU, vmap on GPU) | "vmap" | "loop": how the s row VJPs run
    eigen_k: int = 0  # k lowest true eigenpairs of the "eigen" term (HIP: 8); 0 switches the term off

    def __post_init__(self):
        self.terms = tuple(self.terms)
        if self.n_hr < 1:
            raise UsageError(f"n_hr (Hessian rows per molecule) must be >= 1, got {self.n_hr}")
        if self.hessian_divisor <= 0:
            raise UsageError(f"hessian_divisor must be > 0, got {self.hessian_divisor}")
        if self.row_vjp not in ROW_VJP:
            raise UsageError(f"unknown row_vjp {self.row_vjp!r}; valid: {', '.join(ROW_VJP)}")
        if self.eigen_k < 0:
            raise UsageError(f"eigen_k must be >= 0, got {self.eigen_k}")
        names = [t.field for t in self.terms]
        if len(set(names)) != len(names):
            raise UsageError(f"each field may appear once in a loss, got {names}")

    def active(self, name: str) -> LossTerm | None:
        for t in self.terms:
            if t.field == name and t.weight > 0 and (name != "eigen" or self.eigen_k > 0):
                return t
        return None

    @property
    def needs_hessian_labels(self) -> bool:
        return any(self.active(f) is not None for f in ("hessian_rows", "hessian", "eigen"))


def ef_loss(energy: float = 4.0, forces: float = 100.0, energy_metric: str = "l1",
            forces_metric: str = "l1") -> LossSpec:
    """The E-F loss (Eq. 2) with HORM's default weights."""
    return LossSpec((LossTerm("energy", energy_metric, energy), LossTerm("forces", forces_metric, forces)))


def efh_loss(energy: float = 4.0, forces: float = 100.0, hessian: float = 4.0, n_hr: int = 1,
             energy_metric: str = "l1", forces_metric: str = "l1", hessian_metric: str = "per_atom_l2",
             hessian_divisor: float = HORM_HESSIAN_DIVISOR) -> LossSpec:
    """The E-F-H loss (Eq. 3) with HORM's default weights and N_HR = ``n_hr``."""
    return LossSpec((LossTerm("energy", energy_metric, energy), LossTerm("forces", forces_metric, forces),
                     LossTerm("hessian_rows", hessian_metric, hessian)), n_hr=n_hr,
                    hessian_divisor=hessian_divisor)


@dataclass
class LossOutput:
    """``total`` scalar (differentiable when training); ``per_molecule`` (B,) weighted sum;
    ``parts`` field -> per-molecule mean of each term before weight and divisor (detached,
    in its unit: the Hessian-row part is the plain metric value in eV/Å²)."""

    total: torch.Tensor
    per_molecule: torch.Tensor
    parts: dict[str, torch.Tensor] = field(default_factory=dict)


# --- per-molecule metrics ---------------------------------------------------------------------
def energy_error(pred: torch.Tensor, target: torch.Tensor, metric: str) -> torch.Tensor:
    """(B,) per-molecule energy error, eV (l1) or eV² (mse)."""
    d = pred - target
    return d.abs() if metric == "l1" else d.pow(2)


def forces_error(pred: torch.Tensor, target: torch.Tensor, batch_index: torch.Tensor, num_graphs: int,
                 metric: str) -> torch.Tensor:
    """(B,) per-molecule force error from (N_tot, 3) forces, eV/Å (l1, l2) or (eV/Å)² (mse)."""
    d = pred - target
    if metric == "l1":
        per_atom = d.abs().mean(-1)
    elif metric == "mse":
        per_atom = d.pow(2).mean(-1)
    else:  # l2: Euclidean norm per atom (Eq. 2)
        per_atom = d.pow(2).sum(-1).clamp_min(1e-30).sqrt()
    return scatter_mean(per_atom, batch_index, num_graphs)


def hessian_rows_error(pred_rows: torch.Tensor, ref_rows: torch.Tensor, idx: torch.Tensor, batch: Batch,
                       metric: str) -> torch.Tensor:
    """(B,) mean over the sampled rows of each molecule of d(H_row, Ĥ_row).

    pred_rows, ref_rows: (s, N_tot, 3) eV/Å² (layout of :func:`sample_hessian_rows`);
    idx: (B, s), −1 marks an empty slot (ignored).
    """
    d = ref_rows - pred_rows  # H_row + ∂F̂_row/∂r
    nb = batch.num_graphs
    mol = batch.batch
    if metric == "per_atom_l2":
        per_atom = d.pow(2).sum(-1).clamp_min(1e-30).sqrt()  # (s, N_tot)
        per_row = scatter_sum(per_atom.T, mol, nb).T  # (s, B)
    elif metric == "l2":
        per_row = scatter_sum(d.pow(2).sum(-1).T, mol, nb).T.clamp_min(1e-30).sqrt()
    else:
        e = d.abs() if metric == "l1" else d.pow(2)
        per_row = scatter_sum(e.sum(-1).T, mol, nb).T / (3 * batch.natoms.to(d.dtype))[None, :]
    valid = (idx >= 0).T.to(d.dtype)  # (s, B)
    return (per_row * valid).sum(0) / valid.sum(0).clamp_min(1)


def full_hessian_error(pred: torch.Tensor, target: torch.Tensor, natoms: torch.Tensor, metric: str) -> torch.Tensor:
    """(B,) per-molecule mean |ΔH| (l1) or ΔH² (mse) over each flat (3n)² block."""
    sizes = (3 * natoms.long()) ** 2
    owner = torch.repeat_interleave(torch.arange(natoms.numel(), device=pred.device), sizes.to(pred.device))
    d = pred - target
    e = d.abs() if metric == "l1" else d.pow(2)
    return scatter_sum(e, owner, natoms.numel()) / sizes.to(e.dtype)


def eigen_subspace_error(pred: torch.Tensor, target: torch.Tensor, natoms: torch.Tensor, k: int) -> torch.Tensor:
    """(B,) per-molecule mean |V_kᵀ Ĥ V_k − Λ_k| (eV/Å²) over the k lowest eigenpairs of each
    true block; ``pred``, ``target``: flat concatenated (3n)² blocks. The eigendecomposition of
    the (symmetrised) target runs in float64 without gradient."""
    out, off = [], 0
    for n in natoms.tolist():
        m = 3 * int(n)
        hp = pred[off:off + m * m].reshape(m, m)
        h = target[off:off + m * m].detach().reshape(m, m).double()
        lam, vec = torch.linalg.eigh(0.5 * (h + h.T))
        kk = min(k, m)
        vk = vec[:, :kk].to(hp.dtype)
        out.append((vk.T @ hp @ vk - torch.diag(lam[:kk].to(hp.dtype))).abs().mean())
        off += m * m
    return torch.stack(out)


# --- the loss ----------------------------------------------------------------------------------
def compute_loss(model, batch: Batch, spec: LossSpec, training: bool,
                 generator: torch.Generator | None = None) -> LossOutput:
    """Run ``model`` on ``batch`` and evaluate ``spec`` per molecule.

    training=True keeps every term differentiable w.r.t. the parameters (``create_graph``
    on forces and on the Hessian-row VJPs). training=False still needs autograd for forces
    and rows (call under ``torch.enable_grad()``) but builds no graph through the row VJPs,
    and every returned tensor is detached.
    """
    rows_term, full_term, eigen_term = spec.active("hessian_rows"), spec.active("hessian"), spec.active("eigen")
    for t in (rows_term, full_term, eigen_term):
        if t is not None and batch.hessian is None:
            raise UsageError(f"loss term {t.field!r} needs Hessian labels, but the batch has none")
    for name in ("energy", "forces"):
        t = spec.active(name)
        if t is not None and getattr(batch, name) is None:
            raise UsageError(f"loss term {name!r} needs {name} labels, but the batch has none")
    direct = model.hessian_mode == "direct"  # a head predicts H, no VJPs needed
    graph = training or (rows_term is not None and not direct)
    want_h = full_term is not None or eigen_term is not None or (direct and rows_term is not None)
    out = model(batch, compute_forces=True, compute_hessian=want_h, create_graph=graph)

    per_mol = batch.pos.new_zeros(batch.num_graphs)
    parts: dict[str, torch.Tensor] = {}

    def add(name: str, value: torch.Tensor, weight: float, scale: float = 1.0) -> None:
        nonlocal per_mol
        parts[name] = value.detach().mean()
        per_mol = per_mol + weight * scale * value

    t = spec.active("energy")
    if t is not None:
        add("energy", energy_error(out["energy"], batch.energy, t.metric), t.weight)
    t = spec.active("forces")
    if t is not None:
        add("forces", forces_error(out["forces"], batch.forces, batch.batch, batch.num_graphs, t.metric), t.weight)
    if rows_term is not None:
        if direct:  # rows of the head's Hessian, in the sampled-row layout
            idx = draw_row_indices(batch.natoms, spec.n_hr, generator).to(batch.ptr.device)
            rows = gather_hessian_rows(dataclasses.replace(batch, hessian=out["hessian"]), idx)
        else:
            use_vmap = spec.row_vjp == "vmap" or (spec.row_vjp == "auto" and batch.pos.device.type != "cpu")
            rows, idx = sample_hessian_rows(out["forces"], out["pos"], batch.batch, batch.ptr, s=spec.n_hr,
                                            generator=generator, create_graph=training, use_vmap=use_vmap)
        ref = gather_hessian_rows(batch, idx).to(rows.dtype)
        err = hessian_rows_error(rows, ref, idx, batch, rows_term.metric)
        if spec.max_hessian_label is not None:
            atom_max = ref.detach().abs().amax(dim=(0, 2))  # (N_tot,)
            mol_max = atom_max.new_zeros(batch.num_graphs).scatter_reduce(0, batch.batch, atom_max, "amax")
            err = torch.where(mol_max > spec.max_hessian_label, err * 1e-8, err)
        add("hessian_rows", err, rows_term.weight, 1.0 / spec.hessian_divisor)
    if full_term is not None:
        add("hessian", full_hessian_error(out["hessian"], batch.hessian, batch.natoms, full_term.metric),
            full_term.weight)
    if eigen_term is not None:
        add("eigen", eigen_subspace_error(out["hessian"], batch.hessian.to(out["hessian"].dtype), batch.natoms,
                                          spec.eigen_k), eigen_term.weight)
    total = per_mol.mean()
    if not training:
        total, per_mol = total.detach(), per_mol.detach()
    return LossOutput(total=total, per_molecule=per_mol, parts=parts)

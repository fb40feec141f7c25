"""The Potential protocol and its base class (the registry is :mod:`horm.models.registry`).

Protocol (DESIGN.md "Contracts")::

    out = model(batch, compute_forces=True, compute_hessian=False)
    out["energy"]   (B,)        total energy, eV
    out["forces"]   (N_tot, 3)  eV/Å
    out["hessian"]  (Σ_b (3n_b)²,)  flat row-major per-molecule blocks, eV/Å²,
                                 offsets ``out["hess_ptr"]`` == ``batch.hess_ptr``
    out["pos"]      (N_tot, 3)  the tensor all derivatives were taken with respect to;
                                 pass it to :func:`horm.hessian.autograd.sample_hessian_rows`

Subclasses implement only ``_predict(batch, pos) -> {"energy": (B,)[, "forces": (N_tot, 3)]}``
and set ``forces_mode``: ``"autograd"`` (forces = −∇E) or ``"direct"`` (a force head), and
``hessian_mode``: ``"autograd"`` (the Hessian is the Jacobian of the forces) or ``"direct"``
(a head predicts it: the subclass also implements ``_predict_hessian``). :meth:`Potential.forward`
is the one forward of every model; all derivatives are taken there, through
:mod:`horm.hessian.autograd`.

Energy references: every model carries a buffer ``atom_ref`` (119,) eV indexed by atomic
number; Σ_i atom_ref[Z_i] is added to the network energy, so ``energy`` is a *total*
energy comparable with DFT labels. It starts at zero; the trainer fits it on the training
split (:meth:`Potential.set_atom_ref`) and it is saved in the state dict with the weights.

Gradients: ``create_graph`` (default: ``self.training``) decides whether the outputs stay
differentiable (w.r.t. parameters and ``pos``). With ``create_graph=False`` all returned
tensors are detached. To draw Hessian rows from ``out["forces"]`` you need
``create_graph=True`` (in training mode that is the default).
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from horm.data.batch import Batch, flatten_hessians
from horm.errors import UsageError
from horm.hessian.autograd import HessianMethod, SavedTensorMeter, auto_chunk, compute_forces, full_hessian
from horm.models.graph import scatter_sum

ForcesMode = Literal["autograd", "direct"]
FORCES_MODES = ("autograd", "direct")
HessianMode = Literal["autograd", "direct"]
PRESETS = ("tiny", "small", "paper", "horm")
MAX_Z = 118


class Potential(nn.Module):
    """Base class: owns forces, Hessians and energy references; subclasses give ``_predict``.

    Class attributes a subclass sets: ``forces_mode``, ``hessian_mode``, ``exposes_features``,
    ``config_cls`` (a dataclass) and ``presets`` (preset name -> dict of config fields). ``name``
    is set by the registry.
    """

    name: ClassVar[str] = ""
    forces_mode: ClassVar[ForcesMode] = "autograd"
    hessian_mode: ClassVar[HessianMode] = "autograd"  # "direct": a head predicts it (_predict_hessian)
    exposes_features: ClassVar[bool] = False  # _predict(..., return_features=True) gives node features
    config_cls: ClassVar[type] = object
    presets: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(self, cfg):
        super().__init__()
        if self.forces_mode not in FORCES_MODES:
            raise UsageError(f"forces_mode {self.forces_mode!r}; valid: {', '.join(FORCES_MODES)}")
        self.cfg = cfg
        self.register_buffer("atom_ref", torch.zeros(MAX_Z + 1))  # (119,) eV per element

    # --- subclass hook -------------------------------------------------------------------
    def _predict(self, batch: Batch, pos: torch.Tensor) -> dict[str, torch.Tensor]:
        """Network energy (B,) eV without references; direct models also "forces" (N_tot, 3).

        A model that declares ``exposes_features`` also takes ``return_features=True`` and then adds
        "node_scalar" (N_tot, F) and "node_vector" (N_tot, 3, F), what a Hessian head reads; a model
        with ``hessian_mode == "direct"`` is called that way when a Hessian is asked for, and may add
        whatever its :meth:`_predict_hessian` needs."""
        raise NotImplementedError

    def _predict_hessian(self, batch: Batch, pos: torch.Tensor, pred: dict[str, torch.Tensor]) -> torch.Tensor:
        """The flat per-molecule Hessians (Σ_b (3n_b)²,) eV/Å² of a model with a direct head, from the
        output ``pred`` of its ``_predict(..., return_features=True)``."""
        raise NotImplementedError(f"{type(self).__name__} has no direct Hessian head")

    # --- config / references --------------------------------------------------------------
    @property
    def config(self) -> dict[str, Any]:
        """JSON-able dict that rebuilds this architecture via :func:`build_model_from_config`."""
        return {"name": self.name, **dataclasses.asdict(self.cfg)}

    def set_atom_ref(self, ref) -> None:
        """Set per-element references: a (119,) tensor/array or a {Z: eV} mapping (others stay 0)."""
        if isinstance(ref, dict):
            t = torch.zeros_like(self.atom_ref)
            for z, e in ref.items():
                t[int(z)] = float(e)
        else:
            t = torch.as_tensor(ref, dtype=self.atom_ref.dtype).reshape(-1)
            if t.numel() != MAX_Z + 1:
                raise UsageError(f"atom_ref needs {MAX_Z + 1} entries (index = Z), got {t.numel()}")
        self.atom_ref.copy_(t.to(self.atom_ref))

    def reference_energy(self, batch: Batch) -> torch.Tensor:
        """Σ_i atom_ref[Z_i] per molecule, (B,) eV."""
        return scatter_sum(self.atom_ref[batch.numbers], batch.batch, batch.num_graphs)

    # --- the protocol ---------------------------------------------------------------------
    def forward(self, batch: Batch, compute_forces: bool = True, compute_hessian: bool = False, *,
                create_graph: bool | None = None, hessian_method: HessianMethod = "batched",
                chunk_size: int | None = None, jacobian_hessian: bool = False) -> dict[str, torch.Tensor]:
        """Energy (B,) eV, forces (N_tot, 3) eV/Å, optional flat Hessian; see the module docstring.

        The one forward of every model. The Hessian is the autograd Jacobian of the forces, or, for a
        model with ``hessian_mode == "direct"``, its head's output (:meth:`_predict_hessian`, run
        without a graph unless ``create_graph``); ``jacobian_hessian`` asks such a model for the
        Jacobian of its forces instead (the head committee compares the two).
        ``hessian_method``: "batched" | "vmap" | "loop" (see :mod:`horm.hessian.autograd`).
        ``chunk_size``: Hessian rows per vmapped VJP; None picks it from the memory the
        forward pass saved and a memory budget (:func:`horm.hessian.autograd.memory_budget_bytes`).
        Both only matter for an autograd Hessian.
        """
        graph = self.training if create_graph is None else bool(create_graph)
        head = compute_hessian and self.hessian_mode == "direct" and not jacobian_hessian
        autograd_h = compute_hessian and not head
        autograd = self.forces_mode == "autograd"
        need_pos_grad = graph or autograd_h or ((compute_forces or compute_hessian) and autograd)
        pos = batch.pos
        if need_pos_grad and not pos.requires_grad:
            pos = pos.detach().requires_grad_(True)
        auto = autograd_h and chunk_size is None and hessian_method != "loop"
        meter = SavedTensorMeter() if auto else contextlib.nullcontext()
        with torch.set_grad_enabled(need_pos_grad or (torch.is_grad_enabled() and not head)):
            with meter:
                pred = self._predict(batch, pos, return_features=True) if head else self._predict(batch, pos)
                energy = pred["energy"] + self.reference_energy(batch).to(pred["energy"].dtype)
                out: dict[str, torch.Tensor] = {"energy": energy, "pos": pos}
                forces = None
                if compute_forces or compute_hessian:
                    if autograd:
                        forces = compute_forces_fn(energy, pos, create_graph=graph or autograd_h)
                    else:
                        forces = pred["forces"]
                    out["forces"] = forces
            if autograd_h:
                if auto:
                    chunk_size = auto_chunk(meter.nbytes, device=pos.device)
                blocks = full_hessian(forces, pos, batch.ptr, method=hessian_method, chunk_size=chunk_size,
                                      create_graph=graph)
                out["hessian"] = flatten_hessians(blocks)
        if head:
            with torch.set_grad_enabled(graph):
                out["hessian"] = self._predict_hessian(batch, pos if graph else pos.detach(), pred)
        if compute_hessian:
            out["hess_ptr"] = batch.hess_ptr
        if not graph:
            out = {k: (v.detach() if k != "pos" else v) for k, v in out.items()}
        return out


compute_forces_fn = compute_forces  # forward() has a flag of the same name

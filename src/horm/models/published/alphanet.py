"""HORM's published AlphaNet (``horm-alphanet``), computing what the reference code computes.

Reference: deepprinciple/HORM at 8fc0be0, ``alphanet/models/alphanet.py`` (class ``AlphaNet``),
built by ``training_module.PotentialModule`` as ``AlphaNet(AlphaConfig(model_config)).float()``
and evaluated by ``eval.py`` (forces = −∇E by autograd; Hessian = autograd of the forces).
The network predicts HORM's ``ae`` (energy minus per-element references); ``atom_ref``
(set by the loader from :data:`HORM_ATOM_REFS_EV`) turns it into a total energy.
Layers: :mod:`horm.models.published._alphanet_layers`. Fixtures that pin it:
``../shared/reference/horm_models/AlphaNet/``.

Quirks of the reference, kept (a checkpoint computes what it computed):

- per-element readout ``a[Z]·E_i + b[Z]`` with learnable tensors of 108 entries;
- complex states: the per-atom state q (from ``kernel1``) is updated each layer by the
  bilinear complex kernel ``kernels_real/imag`` in (s, q) and divided by |q| (undefined at
  q = 0); edge states keep only their phase ``angle(·)`` (a 2π jump on the negative real axis);
- the FTE block's vector "norm" is the L1 norm over x, y, z, which is not rotation
  invariant: the energy changes when the molecule is rotated or mirrored (fixture's small
  weights: |ΔE| up to 1.4e-3 eV, force errors up to 4e-3 eV/Å; with the Euclidean norm the
  same weights are invariant to 1e-15; see the tests);
- the edge-state kernel is scaled by 1/sqrt(hidden_channels // head) (not the state width);
- cosine cutoff envelope (C¹ only: the Hessian jumps when a pair crosses the cutoff);
- dropout (p = 0.5, ``has_dropout_flag``) acts in training mode, as in the reference, where
  HORM's eval.py ran in training mode; call ``.eval()`` for the deterministic model;
- dead parameters (held, loaded, never used): every layer's ``unitary`` and ``fc_dx``, and
  the last layer's ``scale2`` (its rotary phases have no next layer).

What differs from the reference code (none changes the outputs beyond rounding):

- complex arithmetic is written on (real, imaginary) pairs; angle(z) = atan2(Im z, Re z),
  |q| = hypot(Re q, Im q), so float64 runs, vmap'ed Hessian VJPs and double backward stay real;
- plain-torch neighbour list (:func:`horm.models.graph.radius_graph`, r < r_c, same edge
  order as torch_cluster's CUDA order) without the reference's 1000-neighbour cap;
- positions are centred inside ``_predict`` (the reference's ``compute_extra_props`` does
  it before the call); derivatives are w.r.t. the raw positions (equal up to rounding);
- no periodic boundaries or stress (``use_pbc``/``compute_stress`` are refused), one target;
- ``has_norm_before_flag`` and ``has_norm_after_flag`` together are refused (the reference
  builds a LayerNorm of the wrong width and fails at run time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from horm.data.batch import Batch
from horm.models.base import Potential
from horm.models.registry import register_model
from horm.models.graph import radius_graph, scatter_mean, scatter_sum
from horm.models.published import CheckpointFormat, HParams, StateDict, register_checkpoint_format
from horm.models.published._alphanet_layers import (FTE, EquiMessagePassing, NeighborEmb, RadialEmbedding, SVector,
                                                    cosine_envelope)

REDUCTIONS = ("sum", "mean")


@dataclass
class PublishedAlphaNetConfig:
    """The reference's ``model_config`` fields that shape the network (same names)."""

    num_layers: int = 2  # message layers (each followed by an FTE block)
    hidden_channels: int = 16  # H, scalar and vector feature width (even: H/2 rotary pairs)
    cutoff: float = 5.0  # Å, radius graph and cosine envelope
    num_radial: int = 8  # exp-normal radial functions
    head: int = 4  # heads of the complex edge state
    main_chi1: int = 8  # complex channels of the per-atom state q
    mp_chi1: int = 8  # complex edge-state phases per message (χ₁ of the layers)
    chi2: int = 4  # bond dimension of the edge-state contraction
    hidden_channels_chi: int = 16  # complex edge-state channels (a multiple of head)
    a: float = 0.35  # initial per-element readout scale (learnable, 108 entries)
    b: float = 0.0  # initial per-element readout shift
    eps: float = 1e-6  # Å, added to |r_ij| in the unit bond vector
    has_dropout_flag: bool = True  # dropout on the edge states (training mode only)
    has_norm_before_flag: bool = True  # LayerNorm on the aggregated message (χ₁ + H)
    has_norm_after_flag: bool = False  # LayerNorm on the phase part (χ₁) only
    reduce_mode: str = "sum"  # message aggregation: "sum" | "mean"
    readout: str = "sum"  # per-molecule energy: "sum" | "mean" over atoms
    use_sigmoid: bool = False  # sigmoid((E − 0.5)·5) on the molecular output

    def __post_init__(self):
        for name in ("reduce_mode", "readout"):
            if getattr(self, name) not in REDUCTIONS:
                raise ValueError(f"{name} {getattr(self, name)!r}; valid: {', '.join(REDUCTIONS)}")
        if self.hidden_channels < 4 or self.hidden_channels % 2:
            raise ValueError(f"hidden_channels must be even and >= 4, got {self.hidden_channels}")
        if self.head < 1 or self.hidden_channels_chi % self.head or self.hidden_channels_chi < 2:
            raise ValueError(f"hidden_channels_chi ({self.hidden_channels_chi}) must be a multiple of head "
                             f"({self.head})")
        if min(self.num_layers, self.num_radial, self.main_chi1, self.mp_chi1, self.chi2) < 1 or self.cutoff <= 0:
            raise ValueError(f"invalid AlphaNet size: {self}")
        if self.has_norm_before_flag and self.has_norm_after_flag:
            raise ValueError("has_norm_before_flag and has_norm_after_flag cannot both be set "
                             "(the reference fails on that combination)")


PRESETS = {
    # the fixture's small configuration (../shared/reference/horm_models/AlphaNet/small/config.json)
    "small": dict(num_layers=2, hidden_channels=16, num_radial=8, head=4, main_chi1=8, mp_chi1=8, chi2=4,
                 hidden_channels_chi=16),
    # HORM's train.py model_config (the released checkpoint): 3,450,267 parameters
    "published": dict(num_layers=4, hidden_channels=128, num_radial=64, head=16, main_chi1=32, mp_chi1=32,
                      chi2=8, hidden_channels_chi=96),
}


@register_model("horm-alphanet")
class PublishedAlphaNet(Potential):
    """HORM's AlphaNet; ``state_dict`` keys are the checkpoint's ``potential.*`` keys (+ ``atom_ref``)."""

    forces_mode = "autograd"
    config_cls = PublishedAlphaNetConfig
    presets = PRESETS

    def __init__(self, cfg: PublishedAlphaNetConfig):
        super().__init__(cfg)
        h, chi = cfg.hidden_channels, cfg.main_chi1
        self.a = nn.Parameter(torch.ones(108) * cfg.a)
        self.b = nn.Parameter(torch.ones(108) * cfg.b)
        self.kernel1 = nn.Parameter(torch.randn(h, 2 * chi))
        self.kernels_real = nn.Parameter(torch.randn(cfg.num_layers, h, chi, chi))
        self.kernels_imag = nn.Parameter(torch.randn(cfg.num_layers, h, chi, chi))
        self.z_emb = nn.Embedding(95, h)
        self.radial_emb = RadialEmbedding(cfg.num_radial, cfg.cutoff)
        self.radial_lin = nn.Sequential(nn.Linear(cfg.num_radial, h), nn.SiLU(), nn.Linear(h, h))
        self.neighbor_emb = NeighborEmb(h)
        self.S_vector = SVector(h)
        self.lin = nn.Sequential(nn.Linear(3, h // 4), nn.SiLU(), nn.Linear(h // 4, 1))
        self.message_layers = nn.ModuleList(
            EquiMessagePassing(h, cfg.num_radial, cfg.hidden_channels_chi, cfg.head, cfg.mp_chi1, cfg.chi2,
                               cfg.has_dropout_flag, cfg.has_norm_before_flag, cfg.has_norm_after_flag,
                               cfg.reduce_mode) for _ in range(cfg.num_layers))
        self.FTEs = nn.ModuleList(FTE(h) for _ in range(cfg.num_layers))
        self.last_layer = nn.Linear(h, 1)
        self.last_layer_quantum = nn.Linear(2 * chi, 1)

    def _edge_features(self, pos, i, j):
        """Radial embedding (E, R), enveloped radial features (E, H), envelope (E,), unit bonds (E, 3),
        and the invariant edge weights (E, 3H + R) from projecting S_vector onto each edge frame."""
        cfg = self.cfg
        vecs = pos[j] - pos[i]
        dist = vecs.norm(dim=-1)
        radial_emb = self.radial_emb(dist)
        env = cosine_envelope(dist, cfg.cutoff)
        radial_hidden = env.unsqueeze(-1) * self.radial_lin(radial_emb)
        edge_dir = vecs / (dist.unsqueeze(1) + cfg.eps)
        mean = scatter_mean(pos[j], i, pos.shape[0])  # mean neighbour position around each centre
        cross = torch.cross(pos[i] - mean[i], pos[j] - mean[i], dim=-1)
        frame = torch.stack([edge_dir, cross, torch.cross(edge_dir, cross, dim=-1)], dim=-1)  # (E, xyz, axis)
        return radial_emb, radial_hidden, env, edge_dir, frame

    def _scalarise(self, sv: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        """Coordinates of per-atom vectors sv (E, 3, H) in the edge frames, |·| on the cross axis -> (E, H)."""
        c = (sv.unsqueeze(2) * frame.unsqueeze(-1)).sum(dim=1)  # (E, axis, H)
        c = torch.stack([c[:, 0], c[:, 1].abs(), c[:, 2]], dim=1).permute(0, 2, 1)  # (E, H, axis)
        return (self.lin(c) + c[:, :, :1]).squeeze(-1) / math.sqrt(self.cfg.hidden_channels)

    def _predict(self, batch: Batch, pos: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        pos = pos - scatter_mean(pos, batch.batch, batch.num_graphs)[batch.batch]  # as compute_extra_props
        i, j = radius_graph(pos, batch.ptr, cfg.cutoff)
        z = batch.numbers.long()
        z_emb = F.layer_norm(self.z_emb(z), (cfg.hidden_channels,))
        radial_emb, radial_hidden, env, edge_dir, frame = self._edge_features(pos, i, j)
        s = self.neighbor_emb(z, z_emb, i, j, radial_hidden)
        sv = self.S_vector(s, edge_dir, i, j, radial_hidden)
        weight = torch.cat([self._scalarise(sv[i], frame), self._scalarise(sv[j], frame)], dim=-1)
        weight = torch.cat([weight * env.unsqueeze(-1), radial_hidden, radial_emb], dim=-1)
        q_re, q_im = (z_emb @ self.kernel1).split(cfg.main_chi1, dim=-1)
        vec = s.new_zeros((s.shape[0], 3, s.shape[1]))
        rope = None
        for layer in range(cfg.num_layers):
            rope, ds, dvec = self.message_layers[layer](s, vec, i, j, radial_emb, weight, edge_dir, rope)
            s, vec = s + ds, vec + dvec
            q_re, q_im = self._update_state(layer, s, q_re, q_im)
            ds, dvec = self.FTEs[layer](s, vec)
            s, vec = s + ds, vec + dvec
        e = self.last_layer(s) + self.last_layer_quantum(torch.cat([q_re, q_im], dim=-1)) / cfg.main_chi1
        e = self.a[z].unsqueeze(1) * e + self.b[z].unsqueeze(1)
        e = scatter_sum(e, batch.batch, batch.num_graphs) if cfg.readout == "sum" else \
            scatter_mean(e, batch.batch, batch.num_graphs)
        if cfg.use_sigmoid:
            e = torch.sigmoid((e - 0.5) * 5)
        return {"energy": e.squeeze(-1)}

    def _update_state(self, layer: int, s, q_re, q_im):
        """q_k ← Σ_{i,l} K_ikl s_i q_l with K = kernels_real + i·kernels_imag, then q / |q| (elementwise)."""
        c = self.cfg.main_chi1
        t_re = (s @ self.kernels_real[layer].reshape(s.shape[1], -1)).view(-1, c, c)  # (N, k, l)
        t_im = (s @ self.kernels_imag[layer].reshape(s.shape[1], -1)).view(-1, c, c)
        new_re = torch.einsum("bkl,bl->bk", t_re, q_re) - torch.einsum("bkl,bl->bk", t_im, q_im)
        new_im = torch.einsum("bkl,bl->bk", t_re, q_im) + torch.einsum("bkl,bl->bk", t_im, q_re)
        r = torch.hypot(new_re, new_im)
        return new_re / r, new_im / r


# --- checkpoint format --------------------------------------------------------------------------
_SIGNATURE = ("kernel1", "kernels_real", "kernels_imag", "message_layers.0.diachi1", "FTEs.0.vec_proj.weight")
_UNSUPPORTED = {"use_pbc": False, "compute_stress": False}


def _model_config(hparams: HParams) -> dict[str, Any] | None:
    mc = hparams.get("model_config") if isinstance(hparams, Mapping) else None
    return dict(mc) if isinstance(mc, Mapping) else None


def recognise(hparams: HParams, state_dict: StateDict) -> bool:
    """An AlphaNet checkpoint: ``model_config.name`` says so, or (no hyper-parameters) its keys do."""
    mc = _model_config(hparams)
    if mc is not None and "name" in mc:
        return str(mc["name"]).lower() == "alphanet"
    return all(k in state_dict for k in _SIGNATURE)


def _shape(state_dict: StateDict, key: str, ndim: int) -> tuple[int, ...]:
    if key not in state_dict:
        raise ValueError(f"AlphaNet checkpoint: state_dict has no {key!r}")
    shape = tuple(state_dict[key].shape)
    if len(shape) != ndim or min(shape) < 1:
        raise ValueError(f"AlphaNet checkpoint: {key!r} has shape {shape}, expected {ndim} non-empty dimensions")
    return shape


def sizes_from_state_dict(state_dict: StateDict) -> dict[str, Any]:
    """Architecture sizes read off the tensor shapes (cutoff from the RBF means: μ_0 = e^{−r_c})."""
    num_layers, hidden, chi1, _ = _shape(state_dict, "kernels_real", 4)
    head1, _, chi2 = _shape(state_dict, "message_layers.0.kernel_real", 3)
    norm = state_dict.get("message_layers.0.dx_layer_norm.weight")
    mp_chi1 = _shape(state_dict, "message_layers.0.diachi1", 1)[0]
    if _shape(state_dict, "last_layer.weight", 2)[0] != 1:
        raise ValueError("AlphaNet checkpoint: only one output target is supported")
    mu0 = float(state_dict["radial_emb.means"].reshape(-1)[0]) if "radial_emb.means" in state_dict else 0.0
    if not 1e-12 < mu0 < 1.0:
        raise ValueError(f"AlphaNet checkpoint: radial_emb.means[0] = {mu0} is not e^(-cutoff) of a cutoff > 0")
    return dict(num_layers=num_layers, hidden_channels=hidden, main_chi1=chi1, mp_chi1=mp_chi1, chi2=chi2,
                head=head1 - 1, num_radial=_shape(state_dict, "radial_emb.means", 1)[0],
                hidden_channels_chi=_shape(state_dict, "message_layers.0.scale.weight", 2)[0] // 2,
                has_norm_before_flag=norm is not None and norm.shape[0] == mp_chi1 + hidden,
                has_norm_after_flag=norm is not None and norm.shape[0] == mp_chi1,
                cutoff=round(-math.log(mu0), 4))


def config(hparams: HParams, state_dict: StateDict) -> dict[str, Any]:
    """Config for :func:`build_model_from_config`: sizes from the shapes, the rest from ``model_config``
    (a checkpoint saves it) or, without it, train.py's values (eps 1e-6, sums, no sigmoid)."""
    sizes = sizes_from_state_dict(state_dict)
    mc = _model_config(hparams) or {}
    for k, ok in _UNSUPPORTED.items():
        if k in mc and bool(mc[k]) != ok:
            raise ValueError(f"AlphaNet checkpoint: {k}={mc[k]!r} is not supported (molecules only)")
    for k, v in sizes.items():
        if k in mc and k != "cutoff" and type(v)(mc[k]) != v:
            raise ValueError(f"AlphaNet checkpoint: model_config {k}={mc[k]!r} but the weights say {v!r}")
    if "cutoff" in mc and abs(float(mc["cutoff"]) - sizes["cutoff"]) > 1e-3:
        raise ValueError(f"AlphaNet checkpoint: model_config cutoff={mc['cutoff']!r} but radial_emb.means says "
                         f"{sizes['cutoff']!r}")
    out: dict[str, Any] = {"name": "horm-alphanet", **sizes}
    for k in ("cutoff", "a", "b", "eps", "has_dropout_flag", "reduce_mode", "readout", "use_sigmoid"):
        if k in mc:
            out[k] = type(getattr(PublishedAlphaNetConfig, k))(mc[k])
    return out


register_checkpoint_format(CheckpointFormat(
    model="horm-alphanet", recognise=recognise, config=config,
    description="HORM AlphaNet (training_module.PotentialModule, model_config name 'AlphaNet')"))

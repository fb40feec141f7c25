"""LEFTNet: local-frame equivariant message passing, in two variants.

Reference: Y. Du, L. Wang, D. Feng, G. Wang, S. Ji, C. P. Gomes, Z.-M. Ma, "A new perspective
on building efficient and expressive 3D equivariant graph neural networks", NeurIPS 2023.
HORM (Cui et al. 2025) trains it as an MLIP; its released code uses 6 layers, 196 channels,
a 10 Å cutoff on a graph fully connected within each molecule.

The blocks, as in the paper:

- **edge frames** (e_ij, c_ij, e_ij × c_ij): the unit bond vector and the normalised cross
  product of the two (centroid-referenced) positions;
- **local substructure encoding (LSE)**: an equivariant vector per atom (a radially weighted
  sum of bond directions), projected onto each edge frame to give invariant edge features;
- **equivariant message passing**: scalar s (N, H) and vector v (N, 3, H) features;
- **frame transition encoding (FTE)**: vector features projected onto a node frame and
  mixed back into the scalars.

Choices made here (and why), all smooth so that second derivatives are well defined:

- SiLU activations; a C² polynomial cutoff envelope (:mod:`horm.models.envelope`) on every
  edge term, so energy, forces and the autograd Hessian stay continuous when a pair crosses
  the cutoff of a radius graph (tested with non-zero biases). The original's cosine envelope
  is only C¹: the Hessian jumps at the cutoff.
- Norms use sqrt(|x|² + ε²), frame axes are x / sqrt(|x|² + ε_f²) and |x| on the cross-axis
  coordinate (reflection invariance) is sqrt(x² + ε²) − ε. The original adds 1e-6 after the
  square root and takes |x|; then the Hessian explodes wherever a cross product vanishes
  (linear molecules, atoms collinear with the centroid). The smoothing scales are O(1) on
  purpose: with ε = ε_f = 0.01 an untrained tiny model gave max |H| ≈ 1.8e5 eV/Å² on CO2
  (DFT Hessians here stay below ~160); with ε = 0.3, ε_f = 1 Å it gives ~9 and varies
  smoothly along a bend through 180°. Axes are then not exactly unit vectors; invariance
  and equivariance are unaffected.
- The node frame uses a cutoff-weighted mean of neighbour positions. With an unweighted mean
  on a fully connected, centroid-referenced graph the node cross axis is identically zero.
- Frame coordinates of the H vector channels are read out by one linear map over all
  3H coordinates (a BLAS matmul) instead of the original per-channel 3→H/4→1 MLP, which
  dominated the cost of a Hessian VJP on CPU.
- Deep stacks stay well scaled: LeCun-normal init, LayerNorm on scalar inputs and an
  equivariant RMS normalisation of vector inputs, v / sqrt(mean_h |v_h|² + ε²); without it
  the multiplicative vector update grows exponentially with depth.
- ``leftnet-df``: a gated equivariant head (Schütt et al. 2021) maps (s, v) to one vector
  per atom, the forces; the energy head is shared with ``leftnet``.

Total charge and spin are not inputs (HORM's data are neutral singlets).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from horm.data.batch import Batch
from horm.errors import UsageError
from horm.models.base import MAX_Z, Potential
from horm.models.registry import register_model
from horm.models.envelope import polynomial_cutoff
from horm.models.graph import GRAPH_KINDS, build_graph, scatter_mean, scatter_sum
from horm.models.layers import (ExpNormalRBF, FrameTransition, frame_project, lecun_init, mlp, soft_norm, soft_unit,
                                vector_rms_norm)


@dataclass
class LEFTNetConfig:
    num_layers: int = 2  # message-passing blocks (each: message + FTE)
    hidden_channels: int = 32  # H, width of scalar and vector features
    num_radial: int = 16  # radial basis functions
    cutoff: float = 5.0  # Å, radius of the cutoff envelope (and of the graph when graph="radius")
    graph: Literal["radius", "full"] = "radius"  # neighbour list inside each molecule
    eps: float = 0.3  # smoothing scale of feature norms, |.| and vector normalisation (feature units)
    frame_eps: float = 1.0  # smoothing length of frame axes, Å (Å² for cross products)
    reflection_invariant: bool = True  # energy invariant under mirror images too

    def __post_init__(self):
        if self.graph not in GRAPH_KINDS:
            raise UsageError(f"unknown graph kind {self.graph!r}; valid: {', '.join(GRAPH_KINDS)}")
        if self.num_layers < 1 or self.hidden_channels < 4 or self.num_radial < 1 or self.cutoff <= 0:
            raise UsageError(f"invalid LEFTNet size: {self}")


PRESETS = {
    "tiny": dict(num_layers=2, hidden_channels=32, num_radial=16, cutoff=5.0, graph="radius"),
    # "small" (2.4 M parameters): picked by benchmarks/preset_step.py for ~2 h trainings on 2 CPU
    # cores. One E-F-H step (batch 8 of the bundled xTB set, 11-12 atoms, 1 thread): tiny 0.10 CPU-s,
    # L4-H96 0.45, this 0.65, L5-H160 1.23 (wall under load 7 on 2 cores: 0.26 / 1.23 / 1.63 / 3.72 s).
    # 5000 steps then take ~1 h on an idle core and fit 2 h (4.4 k steps) on a machine as busy as
    # the one measured; L5-H160 would reach only ~1.9 k there, L4-H96 has half the width for ~30 % less time.
    "small": dict(num_layers=4, hidden_channels=128, num_radial=32, cutoff=5.0, graph="radius"),
    "paper": dict(num_layers=9, hidden_channels=256, num_radial=96, cutoff=10.0, graph="full"),
    "horm": dict(num_layers=6, hidden_channels=196, num_radial=96, cutoff=10.0, graph="full"),
}


class EquivariantMessage(nn.Module):
    """Scalar and vector messages j → i, gated by the invariant edge features."""

    def __init__(self, h: int, num_radial: int, eps: float):
        super().__init__()
        self.h, self.eps = h, eps
        self.norm = nn.LayerNorm(h)
        self.x_proj = mlp(h, h, 3 * h)
        self.rbf_proj = nn.Linear(num_radial, 3 * h, bias=False)  # rbf carries the cutoff envelope
        self.edge_proj = mlp(3 * h + num_radial, 3 * h, 3 * h)

    def forward(self, s, vec, edge_index, rbf, edge_feat, unit):
        i, j = edge_index
        xh = self.x_proj(self.norm(s))
        w = self.rbf_proj(rbf) * self.edge_proj(edge_feat)  # (E, 3H); → 0 with zero slope at the cutoff
        ds, gv, gr = torch.split(xh[j] * w, self.h, dim=-1)
        vec = vector_rms_norm(vec, self.eps)
        dvec = vec[j] * gv[:, None, :] / math.sqrt(3.0) + gr[:, None, :] * unit[:, :, None]
        n = s.shape[0]
        return scatter_sum(ds, i, n), scatter_sum(dvec, i, n)


class GatedEquivariantBlock(nn.Module):
    """(s, v) -> (s', v'): v' = gate(s, |W v|) · U v (Schütt et al. 2021), smooth norm."""

    def __init__(self, h: int, out: int, eps: float, last: bool = False):
        super().__init__()
        self.out, self.eps, self.last = out, eps, last
        self.v1 = nn.Linear(h, h, bias=False)
        self.v2 = nn.Linear(h, out, bias=False)
        self.update = mlp(2 * h, h, 2 * out)

    def forward(self, s, vec):
        x, gate = torch.split(self.update(torch.cat([s, soft_norm(self.v1(vec), self.eps, dim=1)], -1)),
                              self.out, dim=-1)
        return (x if self.last else nn.functional.silu(x)), gate[:, None, :] * self.v2(vec)


class _LEFTNetCore(Potential):
    exposes_features = True  # _predict(..., return_features=True): node_scalar, node_vector
    config_cls = LEFTNetConfig
    presets = PRESETS

    def __init__(self, cfg: LEFTNetConfig):
        super().__init__(cfg)
        h, r = cfg.hidden_channels, cfg.num_radial
        self.z_emb = nn.Embedding(MAX_Z + 1, h)
        self.nb_emb = nn.Embedding(MAX_Z + 1, h)
        self.rbf = ExpNormalRBF(r, cfg.cutoff)
        self.radial = mlp(r, h, h)
        self.lse_in = nn.Sequential(nn.Linear(h, h), nn.SiLU())
        self.lse_lin = nn.Linear(3 * h, h)
        self.messages = nn.ModuleList([EquivariantMessage(h, r, cfg.eps) for _ in range(cfg.num_layers)])
        self.ftes = nn.ModuleList([FrameTransition(h, cfg.eps, frame=True, reflect=cfg.reflection_invariant)
                                   for _ in range(cfg.num_layers)])
        self.energy_head = nn.Sequential(nn.LayerNorm(h), mlp(h, h, 1))
        if self.forces_mode == "direct":
            self.force_norm = nn.LayerNorm(h)
            self.force_head = nn.ModuleList([GatedEquivariantBlock(h, h // 2, cfg.eps),
                                             GatedEquivariantBlock(h // 2, 1, cfg.eps, last=True)])
        lecun_init(self)

    def _predict(self, batch: Batch, pos: torch.Tensor, return_features: bool = False) -> dict[str, torch.Tensor]:
        """Energy (B,) eV [+ forces]; ``return_features`` adds the last-layer node features for
        heads (e.g. ``hessian_head``): ``node_scalar`` (N, H) invariant, ``node_vector`` (N, 3, H) equivariant."""
        cfg, eps = self.cfg, self.cfg.eps
        n, nb = pos.shape[0], batch.num_graphs
        z, mol = batch.numbers, batch.batch
        edge_index = build_graph(cfg.graph, pos, batch.ptr, cfg.cutoff)
        i, j = edge_index
        # centroid-referenced positions (translation invariant frames)
        c = pos - scatter_mean(pos, mol, nb)[mol]
        rij = pos[i] - pos[j]
        d = torch.sqrt(rij.pow(2).sum(-1))
        fcut = polynomial_cutoff(d, cfg.cutoff)[:, None]  # (E, 1)
        rbf = self.rbf(d)  # (E, R)
        radial = self.radial(rbf) * fcut  # (E, H)

        # edge frames (E, 3, 3): columns = bond direction, cross axis, their cross product
        e1 = rij / d[:, None]
        e2 = soft_unit(torch.linalg.cross(c[i], c[j]), cfg.frame_eps)
        edge_frame = torch.stack([e1, e2, torch.linalg.cross(e1, e2)], dim=-1)
        # node frames (N, 3, 3) from a cutoff-weighted mean of neighbour positions
        w = fcut * torch.exp(-d)[:, None]
        nbr = scatter_sum(w * c[j], i, n) / (scatter_sum(w, i, n) + 1e-9)
        x1 = soft_unit(c - nbr, cfg.frame_eps)
        y1 = soft_unit(torch.linalg.cross(c, nbr), cfg.frame_eps)
        node_frame = torch.stack([x1, y1, torch.linalg.cross(x1, y1)], dim=-1)

        # initial scalars: own element + radially weighted neighbour elements
        s = self.z_emb(z) + scatter_sum(radial * self.nb_emb(z)[j], i, n)
        # LSE: equivariant substructure vector per atom, read in each edge frame
        sub = scatter_sum(radial[:, None, :] * self.lse_in(s)[j][:, None, :] * e1[:, :, None], i, n)  # (N,3,H)
        feats = []
        for end in (i, j):
            p = frame_project(sub[end], edge_frame, eps, cfg.reflection_invariant)  # (E, 3H)
            feats.append(self.lse_lin(p) + p[:, : cfg.hidden_channels])
        edge_feat = torch.cat([torch.cat(feats, -1) * fcut, radial, rbf], -1)  # (E, 3H + R)

        vec = pos.new_zeros((n, 3, cfg.hidden_channels))
        for msg, fte in zip(self.messages, self.ftes):
            ds, dv = msg(s, vec, edge_index, rbf, edge_feat, e1)
            s, vec = (s + ds) / math.sqrt(2.0), vec + dv
            ds, dv = fte(s, vec, node_frame)
            s, vec = s + ds, vec + dv

        out = {"energy": scatter_sum(self.energy_head(s).squeeze(-1), mol, nb)}
        if self.forces_mode == "direct":
            x, v = self.force_norm(s), vector_rms_norm(vec, eps)
            for block in self.force_head:
                x, v = block(x, v)
            out["forces"] = v.squeeze(-1)
        if return_features:
            out["node_scalar"], out["node_vector"] = s, vec
        return out


@register_model("leftnet")
class LEFTNet(_LEFTNetCore):
    """LEFTNet with an energy head; forces (and Hessians) by automatic differentiation."""

    forces_mode = "autograd"


@register_model("leftnet-df")
class LEFTNetDF(_LEFTNetCore):
    """LEFTNet with an energy head and a direct equivariant force head (Hessian = −∂F̂/∂r)."""

    forces_mode = "direct"

"""AlphaNet: local-frame equivariant message passing with complex phase states (autograd forces).

Reference: B. Yin, J. Wang, W. Du, P. Wang, P. Ying, H. Jia, Z. Zhang, Y. Du, C. P. Gomes,
C. Duan, G. Gong, "AlphaNet: scaling up local frame-based atomistic foundation model",
2025. It extends LEFTNet (see :mod:`horm.models.leftnet`); HORM (Cui et al. 2025) trains it
as an MLIP with forces = −∇E.

The blocks, as in the paper:

- **edge frames** (ê_ij, c_ij, ê_ij × c_ij) with c_ij the cross product of the two atoms'
  positions relative to the local mean position around the centre i;
- **scalarisation**: an equivariant vector per atom (a radially weighted sum of bond
  directions) projected onto each edge frame gives invariant edge features (the c-axis
  coordinate enters as |·|, so the energy is also invariant under reflections);
- **equivariant message passing** on scalar s (N, H) and vector v (N, 3, H) features, and
  a **frame transition** (FTE) that mixes vector norms and dot products into the scalars;
- **complex phase states** on edges: each message builds a multi-head complex state,
  contracts it with a learnable complex kernel (a matrix-product-state-like contraction
  with bond dimension χ₂), weights it by radial "bond" terms and keeps its phases; summed
  over neighbours they drive a **rotary frame transition**: the next layer rotates the
  scalar features, read as H/2 complex numbers, by these learned phases;
- a per-atom complex **node state** q (N, χ₁) updated in every layer by a bilinear complex
  kernel in (s, q) and renormalised; its real and imaginary parts join the energy readout;
- energy readout with a learnable per-element scale and shift, summed over atoms.

Choices made here (and why), all for smooth, well-defined second derivatives:

- Phases are kept as (Re z, Im z)/sqrt(|z|² + ε²) instead of angle(z): the same
  information without the branch cut of atan2 (a jump of 2π) or its singularity at z = 0.
  Likewise the node state is renormalised as q/sqrt(|q|² + ε²) instead of q/|q|.
- The vector norm in FTE is the (smoothed) Euclidean norm; an L1 norm over x, y, z is
  neither smooth nor rotation invariant.
- Frames, norms, |·| and cutoff envelopes are LEFTNet's smooth versions (soft_unit,
  soft_norm, soft_abs, C² polynomial cutoff, cutoff-weighted local mean); phase features are
  multiplied by the envelope too, so energy, forces and the autograd Hessian are continuous
  across the cutoff (the reference's cosine envelope is C¹: its Hessian jumps there).
- Complex arithmetic is written out on (real, imaginary) pairs: real tensors keep float64
  tests, vmap'ed Hessian VJPs and double backward simple.
- No dropout (a stochastic model has no Hessian); vector features are RMS-normalised before
  each update, as in our LEFTNet, so deep stacks stay well scaled.

Presets: ``tiny`` (tests) and ``paper``, HORM's setting: 4 layers, hidden 128, 16 heads,
64 radial functions, 5 Å cutoff, edge-state width 96, χ₁ = 32, χ₂ = 8. HORM trains it with
lr 1e-4, batch 32 and N_HR = 1 Hessian row per molecule, e.g.
``horm train model.name=alphanet model.preset=paper optim.lr=1e-4 trainer.batch_size=32 loss.n_hr=1``.
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
from horm.models.graph import GRAPH_KINDS, build_graph, scatter_sum
from horm.models.layers import (ExpNormalRBF, FrameTransition, frame_project, lecun_init, mlp, soft_norm, soft_unit,
                                vector_rms_norm)


@dataclass
class AlphaNetConfig:
    num_layers: int = 2  # message-passing blocks (each: message + node-state update + FTE)
    hidden_channels: int = 32  # H, width of scalar and vector features (even: H/2 rotary pairs)
    num_radial: int = 16  # radial basis functions
    cutoff: float = 5.0  # Å, cutoff envelope radius (and graph radius when graph="radius")
    graph: Literal["radius", "full"] = "radius"  # neighbour list inside each molecule
    num_heads: int = 4  # heads of the complex edge state
    state_channels: int = 32  # complex channels of the edge state, split over the heads
    bond_dim: int = 4  # χ₂, bond dimension of the edge-state contraction
    phase_channels: int = 8  # χ₁ of the messages: complex phases per edge
    node_state_channels: int = 8  # χ₁ of the per-atom complex state
    eps: float = 0.3  # smoothing scale of feature norms, |.| and vector normalisation
    frame_eps: float = 1.0  # smoothing length of frame axes, Å (Å² for cross products)
    phase_eps: float = 0.1  # smoothing of complex normalisations z/sqrt(|z|² + ε²)
    reflection_invariant: bool = True  # energy invariant under mirror images too

    def __post_init__(self):
        if self.graph not in GRAPH_KINDS:
            raise UsageError(f"unknown graph kind {self.graph!r}; valid: {', '.join(GRAPH_KINDS)}")
        if self.hidden_channels < 4 or self.hidden_channels % 2:
            raise UsageError(f"hidden_channels must be even and >= 4, got {self.hidden_channels}")
        if self.num_heads < 1 or self.state_channels % self.num_heads:
            raise UsageError(f"state_channels ({self.state_channels}) must be a multiple of num_heads ({self.num_heads})")
        if min(self.num_layers, self.num_radial, self.bond_dim, self.phase_channels, self.node_state_channels) < 1 \
                or self.cutoff <= 0:
            raise UsageError(f"invalid AlphaNet size: {self}")


PRESETS = {
    "tiny": dict(num_layers=2, hidden_channels=32, num_radial=16, cutoff=5.0, graph="radius", num_heads=4,
                 state_channels=32, bond_dim=4, phase_channels=8, node_state_channels=8),
    "paper": dict(num_layers=4, hidden_channels=128, num_radial=64, cutoff=5.0, graph="radius", num_heads=16,
                  state_channels=96, bond_dim=8, phase_channels=32, node_state_channels=32),
}


def soft_phase(re: torch.Tensor, im: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """z/sqrt(|z|² + ε²) on (real, imaginary) parts: ≈ (cos arg z, sin arg z), smooth at z = 0."""
    r = torch.sqrt(re * re + im * im + eps * eps)
    return re / r, im / r


def complex_rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary transition: x (N, H) read as H/2 complex numbers (first half real), times (cos + i sin) (N, H/2)."""
    re, im = x.chunk(2, dim=-1)
    return torch.cat([re * cos - im * sin, re * sin + im * cos], dim=-1)


class PhaseMessage(nn.Module):
    """Messages j → i: scalars, vectors and complex phases from a multi-head edge-state contraction."""

    def __init__(self, cfg: AlphaNetConfig):
        super().__init__()
        h, r = cfg.hidden_channels, cfg.num_radial
        self.h, self.heads, self.eps, self.phase_eps = h, cfg.num_heads, cfg.eps, cfg.phase_eps
        self.width = cfg.state_channels // cfg.num_heads
        self.chi1, self.chi2 = cfg.phase_channels, cfg.bond_dim
        self.norm = nn.LayerNorm(h)
        self.x_proj = mlp(h, h, 3 * h)
        self.rbf_proj = nn.Linear(r, 3 * h, bias=False)  # rbf carries the cutoff envelope
        self.edge_proj = mlp(3 * h + r, 3 * h, 3 * h)
        self.state = nn.Linear(h, 2 * cfg.state_channels)  # (real, imaginary) edge state
        scale = 1.0 / math.sqrt((self.heads + 1) * self.width)
        self.kernel = nn.Parameter(torch.randn(2, self.heads + 1, self.width, self.chi2) * scale)
        self.bond = mlp(3 * h, max(cfg.state_channels // 2, 1), self.chi2)
        self.bond_scale = nn.Parameter(torch.randn(self.chi1))
        self.bond_lin = nn.Linear(self.chi1, self.chi1)
        self.phase_lin = nn.Linear(self.chi1, self.chi1)
        self.out_norm = nn.LayerNorm(2 * self.chi1 + h)
        self.rope = nn.Linear(2 * self.chi1, h // 2)

    def edge_phases(self, xs: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Complex edge state -> contraction with the kernel -> bond weights -> smooth phases (E, 2χ₁)."""
        e = xs.shape[0]
        re, im = self.state(xs).view(e, 2, self.heads, self.width).unbind(1)
        one = xs.new_ones((e, 1, self.width))
        re, im = torch.cat([one, re], dim=1), torch.cat([one.new_zeros(one.shape), im], dim=1)  # (E, heads+1, d)
        kr, ki = self.kernel[0], self.kernel[1]
        c_re = torch.einsum("ejl,jlk->ek", re, kr) - torch.einsum("ejl,jlk->ek", im, ki)  # (E, χ₂)
        c_im = torch.einsum("ejl,jlk->ek", re, ki) + torch.einsum("ejl,jlk->ek", im, kr)
        a = nn.functional.silu(self.bond(w))  # (E, χ₂)
        dia = self.bond_lin(a[:, :, None] * self.bond_scale + 1.0)  # (E, χ₂, χ₁)
        p_re = self.phase_lin(torch.einsum("ek,ekl->el", c_re, dia))
        p_im = self.phase_lin(torch.einsum("ek,ekl->el", c_im, dia))
        return torch.cat(soft_phase(p_re, p_im, self.phase_eps), dim=-1)

    def forward(self, s, vec, rope, edge_index, rbf, edge_feat, unit, fcut):
        i, j = edge_index
        n = s.shape[0]
        if rope is not None:
            s = complex_rotate(s, *rope)
        xh = self.x_proj(self.norm(s))
        w = self.rbf_proj(rbf) * self.edge_proj(edge_feat)  # (E, 3H), → 0 with zero slope at the cutoff
        xs, gv, gr = torch.split(xh[j] * w, self.h, dim=-1)
        phases = self.edge_phases(xs, w) * fcut[:, None]
        agg = self.out_norm(scatter_sum(torch.cat([phases, xs], dim=-1), i, n))
        dphase, ds = torch.split(agg, [2 * self.chi1, self.h], dim=-1)
        theta = self.rope(dphase)  # learned rotary phases for the next layer
        vec = vector_rms_norm(vec, self.eps)
        dvec = (vec[j] * gv[:, None, :] / math.sqrt(3.0) + gr[:, None, :] * unit[:, :, None]) / math.sqrt(self.h)
        return ds, scatter_sum(dvec, i, n), (torch.cos(theta), torch.sin(theta))


class NodeState(nn.Module):
    """q'_k = Σ_{i,l} K_{ikl} s_i q_l (complex K, q), then q' / sqrt(|q'|² + ε²) per component."""

    def __init__(self, h: int, chi: int, eps: float):
        super().__init__()
        self.eps = eps
        self.kernel = nn.Parameter(torch.randn(2, h, chi, chi) / math.sqrt(h * chi))

    def forward(self, s: torch.Tensor, q_re: torch.Tensor, q_im: torch.Tensor):
        kr, ki = self.kernel[0], self.kernel[1]
        sr = torch.einsum("ikl,ni->nkl", kr, s)
        si = torch.einsum("ikl,ni->nkl", ki, s)
        re = torch.einsum("nkl,nl->nk", sr, q_re) - torch.einsum("nkl,nl->nk", si, q_im)
        im = torch.einsum("nkl,nl->nk", sr, q_im) + torch.einsum("nkl,nl->nk", si, q_re)
        return soft_phase(re, im, self.eps)


@register_model("alphanet")
class AlphaNet(Potential):
    """AlphaNet with an energy head; forces (and Hessians) by automatic differentiation."""

    forces_mode = "autograd"
    exposes_features = True  # _predict(..., return_features=True): node_scalar, node_vector
    config_cls = AlphaNetConfig
    presets = PRESETS

    def __init__(self, cfg: AlphaNetConfig):
        super().__init__(cfg)
        h, r = cfg.hidden_channels, cfg.num_radial
        self.z_emb = nn.Embedding(MAX_Z + 1, h)
        self.z_norm = nn.LayerNorm(h, elementwise_affine=False)
        self.nb_emb = nn.Embedding(MAX_Z + 1, h)
        self.rbf = ExpNormalRBF(r, cfg.cutoff)
        self.radial = mlp(r, h, h)
        self.lse_in = nn.Sequential(nn.Linear(h, h), nn.LayerNorm(h, elementwise_affine=False), nn.SiLU())
        self.lse_lin = nn.Linear(3 * h, h)
        self.state_in = nn.Linear(h, 2 * cfg.node_state_channels, bias=False)
        self.messages = nn.ModuleList([PhaseMessage(cfg) for _ in range(cfg.num_layers)])
        self.states = nn.ModuleList([NodeState(h, cfg.node_state_channels, cfg.phase_eps)
                                     for _ in range(cfg.num_layers)])
        self.ftes = nn.ModuleList([FrameTransition(h, cfg.eps, frame=False) for _ in range(cfg.num_layers)])
        self.energy_head = nn.Linear(h, 1)
        self.state_head = nn.Linear(2 * cfg.node_state_channels, 1)
        self.elem_scale = nn.Parameter(torch.ones(MAX_Z + 1))  # per-element scale of atomic energies
        self.elem_shift = nn.Parameter(torch.zeros(MAX_Z + 1))  # and shift, eV (on top of atom_ref)
        lecun_init(self)

    def _predict(self, batch: Batch, pos: torch.Tensor, return_features: bool = False) -> dict[str, torch.Tensor]:
        """Energy (B,) eV; ``return_features`` adds last-layer node features for heads (e.g.
        ``hessian_head``): ``node_scalar`` (N, H) invariant, ``node_vector`` (N, 3, H) equivariant."""
        cfg = self.cfg
        n, h = pos.shape[0], cfg.hidden_channels
        z = batch.numbers
        edge_index = build_graph(cfg.graph, pos, batch.ptr, cfg.cutoff)
        i, j = edge_index
        rij = pos[i] - pos[j]
        d = torch.sqrt(rij.pow(2).sum(-1))
        fcut = polynomial_cutoff(d, cfg.cutoff)
        rbf = self.rbf(d)  # (E, R), carries the envelope
        radial = self.radial(rbf) * fcut[:, None]  # (E, H)

        # edge frames (E, 3, 3): bond direction, cross axis about the local mean, their cross product
        unit = rij / d[:, None]
        w = (fcut * torch.exp(-d))[:, None]
        # cutoff-weighted local mean relative to the centre (exactly translation invariant)
        off = scatter_sum(-w * rij, i, n) / (scatter_sum(w, i, n) + 1e-9)
        cross = soft_unit(torch.linalg.cross(-off[i], -rij - off[i]), cfg.frame_eps)
        frame = torch.stack([unit, cross, torch.linalg.cross(unit, cross)], dim=-1)

        # scalars: own element + radially weighted neighbour elements
        z_emb = self.z_norm(self.z_emb(z))
        s = z_emb + scatter_sum(radial * self.z_norm(self.nb_emb(z))[j], i, n)
        # scalarisation: equivariant bond-direction vector per atom, read in each edge frame
        sub = scatter_sum(radial[:, None, :] * self.lse_in(s)[j][:, None, :] * unit[:, :, None], i, n)  # (N,3,H)
        feats = []
        for end in (i, j):
            p = frame_project(sub[end], frame, cfg.eps, cfg.reflection_invariant)  # (E, 3H)
            feats.append((self.lse_lin(p) + p[:, :h]) / math.sqrt(h))
        edge_feat = torch.cat([torch.cat(feats, -1) * fcut[:, None], radial, rbf], -1)  # (E, 3H + R)

        q_re, q_im = self.state_in(z_emb).chunk(2, dim=-1)
        vec = pos.new_zeros((n, 3, h))
        rope = None
        for msg, state, fte in zip(self.messages, self.states, self.ftes):
            ds, dvec, rope = msg(s, vec, rope, edge_index, rbf, edge_feat, unit, fcut)
            s, vec = s + ds, vec + dvec
            q_re, q_im = state(s, q_re, q_im)
            ds, dvec = fte(s, vec)
            s, vec = s + ds, vec + dvec

        e_atom = self.energy_head(s).squeeze(-1) + self.state_head(torch.cat([q_re, q_im], -1)).squeeze(-1) \
            / cfg.node_state_channels
        e_atom = self.elem_scale[z] * e_atom + self.elem_shift[z]
        out = {"energy": scatter_sum(e_atom, batch.batch, batch.num_graphs)}
        if return_features:
            out["node_scalar"], out["node_vector"] = s, vec
        return out

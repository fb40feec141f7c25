"""Layers of HORM's published AlphaNet (see :mod:`horm.models.published.alphanet` for the model,
its quirks and what differs from the reference code).

Every module here keeps the reference's attribute names, so ``state_dict`` keys match the
released checkpoints. Edges are ``(i, j)``: ``i`` receives the message, ``j`` sends it
(the reference's ``edge_index`` is ``(j, i)``); messages are summed over ``i``.
Complex numbers are carried as (real, imaginary) pairs of real tensors.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from horm.models.graph import scatter_mean, scatter_sum

Pair = tuple[torch.Tensor, torch.Tensor]  # (real, imaginary)


def cosine_envelope(dist: torch.Tensor, cutoff: float) -> torch.Tensor:
    """0.5·(cos(π r / r_c) + 1), the reference's ``rbounds`` (no mask: every edge has r < r_c)."""
    return 0.5 * (torch.cos(dist * math.pi / cutoff) + 1.0)


class RadialEmbedding(nn.Module):
    """The reference's ``rbf_emb``: exp-normal functions exp(−β (e^{−r} − μ_k)²) × cosine envelope.

    ``means`` and ``betas`` are buffers (saved in the checkpoint), computed at construction
    exactly as the reference does (float32 linspace from e^{−r_c} to 1).
    """

    def __init__(self, num_rbf: int, cutoff: float):
        super().__init__()
        self.cutoff = cutoff
        start = torch.exp(torch.tensor(-cutoff, dtype=torch.float32, device="cpu"))  # constants: CPU even
        end = torch.exp(torch.tensor(0.0, dtype=torch.float32, device="cpu"))        # under a meta build
        self.register_buffer("means", torch.linspace(start, end, num_rbf, dtype=torch.float32))
        self.register_buffer("betas", torch.full((num_rbf,), float((2 / num_rbf * (end - start)) ** -2),
                                                 dtype=torch.float32))

    def forward(self, dist: torch.Tensor) -> torch.Tensor:
        d = dist.unsqueeze(-1)
        env = cosine_envelope(d, self.cutoff) * (d < self.cutoff).to(d.dtype)
        return env * torch.exp(-self.betas * torch.square(torch.exp(-d) - self.means))


class NeighborEmb(nn.Module):
    """s_i + Σ_j w_ij ⊙ LN(emb(z_j)) (LayerNorm without affine)."""

    def __init__(self, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.embedding = nn.Embedding(95, hidden)

    def forward(self, z, s, i, j, w):
        x = F.layer_norm(self.embedding(z), (self.hidden,))
        return s + scatter_sum(w * x[j], i, s.shape[0])


class SVector(nn.Module):
    """The reference's ``S_vector``: v_i = Σ_j (w_ij ê_ij) ⊗ lin1(s)_j, shape (N, 3, H)."""

    def __init__(self, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.lin1 = nn.Sequential(nn.Linear(hidden, hidden), nn.LayerNorm(hidden, elementwise_affine=False), nn.SiLU())

    def forward(self, s, edge_dir, i, j, w):
        s = self.lin1(s)
        emb = w.unsqueeze(1) * edge_dir.unsqueeze(-1)  # (E, 3, H)
        return scatter_sum(emb * s[j].unsqueeze(1), i, s.shape[0])


class EquiMessagePassing(nn.Module):
    """One message layer: scalar/vector messages plus the complex edge state whose phases, summed
    over neighbours, become the next layer's rotary phases (``rope``).

    ``unitary`` and ``fc_dx`` are created (the checkpoint holds them) but never used, as in the
    reference; the last layer's ``rope`` (and so its ``scale2``) does not reach the energy.
    """

    def __init__(self, hidden: int, num_radial: int, hidden_chi: int, head: int, chi1: int, chi2: int,
                 dropout: bool, norm_before: bool, norm_after: bool, reduce_mode: str):
        super().__init__()
        self.hidden, self.hidden_chi, self.head, self.chi1, self.chi2 = hidden, hidden_chi, head, chi1, chi2
        self.has_dropout_flag, self.norm_before, self.norm_after = dropout, norm_before, norm_after
        self.reduce_mode = reduce_mode
        width = hidden_chi // head
        self.diachi1 = nn.Parameter(torch.randn(chi1))
        self.kernel_real = nn.Parameter(torch.randn(head + 1, width, chi2))
        self.kernel_imag = nn.Parameter(torch.randn(head + 1, width, chi2))
        self.unitary = nn.Parameter(torch.randn(chi1, chi1))  # unused (dead in the reference too)
        self.scale = nn.Linear(hidden, 2 * hidden_chi)
        self.dir_proj = nn.Sequential(nn.Linear(3 * hidden + num_radial, 3 * hidden), nn.SiLU(),
                                      nn.Linear(3 * hidden, 3 * hidden))
        self.x_proj = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 3 * hidden))
        self.rbf_proj = nn.Linear(num_radial, 3 * hidden)
        self.x_layernorm = nn.LayerNorm(hidden)
        self.diagonal = nn.Sequential(nn.Linear(3 * hidden, hidden_chi // 2), nn.SiLU(),
                                      nn.Linear(hidden_chi // 2, chi2))
        if norm_before or norm_after:
            self.dx_layer_norm = nn.LayerNorm(chi1 + hidden if norm_before else chi1)
        self.scale2 = nn.Sequential(nn.Linear(chi1, hidden // 2))
        self.fc_mps = nn.Linear(chi1, chi1)
        self.fc_dx = nn.Linear(chi1, hidden)  # unused (dead in the reference too)
        self.dia = nn.Linear(chi1, chi1)
        self.dropout = nn.Dropout(p=0.5)
        for lin in (self.x_proj[0], self.x_proj[2], self.rbf_proj, self.dir_proj[0], self.dir_proj[2]):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def edge_phases(self, x: torch.Tensor, rbfh: torch.Tensor) -> torch.Tensor:
        """arg of the contracted complex edge state, (E, χ₁)."""
        e, width = x.shape[0], self.hidden_chi // self.head
        re, im = self.scale(x).split(self.hidden_chi, dim=-1)
        re, im = re.reshape(e, self.head, width), im.reshape(e, self.head, width)
        if self.has_dropout_flag:
            re, im = self.dropout(re), self.dropout(im)
        one = re.new_ones((e, 1, width))
        a_re = torch.cat([one, re], dim=1).reshape(e, -1)  # (E, (head+1)·width): [1, q]
        a_im = torch.cat([torch.zeros_like(one), im], dim=1).reshape(e, -1)
        norm = math.sqrt(self.hidden // self.head)  # sic: hidden, not hidden_chi
        k_re = (self.kernel_real / norm).reshape(-1, self.chi2)
        k_im = (self.kernel_imag / norm).reshape(-1, self.chi2)
        conv_re = a_re @ k_re - a_im @ k_im  # (E, χ₂)
        conv_im = a_re @ k_im + a_im @ k_re
        bond = F.silu(self.diagonal(rbfh))  # (E, χ₂)
        dia = self.dia(bond.unsqueeze(-1) * self.diachi1 + 1.0)  # (E, χ₂, χ₁), real
        k_re = torch.einsum("ik,ikl->il", conv_re, dia)
        k_im = torch.einsum("ik,ikl->il", conv_im, dia)
        return torch.atan2(self.fc_mps(k_im), self.fc_mps(k_re))

    def forward(self, x, vec, i, j, edge_rbf, weight, edge_dir, rope: Pair | None):
        """Returns (rope (cos, sin) (N, H/2) each, Δs (N, H), Δvec (N, 3, H))."""
        if rope is not None:
            re, im = x.split(self.hidden // 2, dim=-1)
            c, s = rope
            x = torch.cat([re * c - im * s, re * s + im * c], dim=-1)
        xh = self.x_proj(self.x_layernorm(x))
        rbfh = self.rbf_proj(edge_rbf) * self.dir_proj(weight)
        xs, xh2, xh3 = (xh[j] * rbfh).split(self.hidden, dim=-1)
        xh2 = xh2 * (1 / math.sqrt(3.0))
        agg = torch.cat([self.edge_phases(xs, rbfh), xs], dim=-1)
        dvec = vec[j] * xh2.unsqueeze(1) + xh3.unsqueeze(1) * edge_dir.unsqueeze(2)
        dvec = dvec * (1 / math.sqrt(self.hidden))
        n = x.shape[0]
        dx = scatter_sum(agg, i, n) if self.reduce_mode == "sum" else scatter_mean(agg, i, n)
        dvec = scatter_sum(dvec, i, n)
        if self.norm_before:
            dx = self.dx_layer_norm(dx)
        dx, dy = dx.split([self.chi1, self.hidden], dim=-1)
        if self.norm_after:
            dx = self.dx_layer_norm(dx)
        dx = self.scale2(dx)
        return (torch.cos(dx), torch.sin(dx)), dy, dvec


class FTE(nn.Module):
    """Frame transition: mixes vector norms and dot products into the scalars.

    ``norm_ord`` is 1, the reference's L1 norm over x, y, z (not rotation invariant). It is not
    a config field: the tests set it to 2 on an instance to show that this norm is the only
    rotation-variant step of the network.
    """

    norm_ord: int = 1

    def __init__(self, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.vec_proj = nn.Linear(hidden, 2 * hidden, bias=False)
        self.xvec_proj = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, 3 * hidden))
        for lin in (self.vec_proj, self.xvec_proj[0], self.xvec_proj[2]):
            nn.init.xavier_uniform_(lin.weight)
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)

    def forward(self, x, vec):
        v1, v2 = self.vec_proj(vec).split(self.hidden, dim=-1)
        scalar = torch.linalg.vector_norm(v1, ord=self.norm_ord, dim=-2)  # sic: L1 over x, y, z
        vec_dot = (v1 * v2).sum(dim=1) * (1 / math.sqrt(self.hidden))
        x1, x2, x3 = self.xvec_proj(torch.cat([x, scalar], dim=-1)).split(self.hidden, dim=-1)
        dx = (x1 + x2 + vec_dot) * (1 / math.sqrt(2.0))
        return dx, x3.unsqueeze(1) * v2

"""``hessian_head``: a backbone from the registry plus a head that predicts the Hessian directly.

Idea (HIP: A. Burger, L. Thiede et al., "Shoot from the HIP: Hessian interatomic potentials
without derivatives", ICLR 2026): a symmetric, rotation-equivariant Hessian can be read out
of equivariant features with l ≤ 2, with no automatic differentiation at all. A Cartesian
3×3 tensor splits into irreducible parts, 1 ⊗ 1 = 0 ⊕ 1 ⊕ 2:

- l = 0: α·I (the isotropic part, α a learned invariant);
- l = 1: the antisymmetric part, ½(T − Tᵀ) with T = Σ_k β_k u_k ⊗ w_k (equivalently [ω]×
  with the axial vector ω = Σ_k β_k u_k × w_k);
- l = 2: the symmetric traceless part, ½(S + Sᵀ) − tr(S)/3·I with S = Σ_k γ_k u_k ⊗ w_k,

where u_k, w_k are equivariant vectors (channel mixes of the backbone's node vectors and
the bond direction) and α, β_k, γ_k come from MLPs of invariant features. All of u, w are
polar vectors, so each block is a proper tensor: equivariant under rotations and mirrors.

Blocks (H per molecule (3n, 3n) eV/Å², index 3·atom + xyz, H_ab the 3×3 block of atoms a, b):

- **off-diagonal** (a ≠ b): over a pair graph that holds *every* pair of atoms of a molecule
  (HORM/T1x molecules have ≤ ~25 atoms). For each unordered pair a < b the head computes a
  block B̃ for both orientations, (a, b) and (b, a), from ordered-pair features (node
  features of both atoms, Gaussians of the distance, projections of node vectors on the
  bond), and sets H_ab = ½(B̃_ab + B̃_baᵀ), H_ba = H_abᵀ. The result does not depend on
  which atom is called a, so permuting atoms permutes blocks. The l = 1 part is allowed
  here: true off-diagonal blocks are not symmetric. The coefficients are multiplied by a
  bias-free linear map of the distance Gaussians, so blocks of far-apart atoms vanish.
- **diagonal** (a = a): from the node features of atom a, l = 0 and l = 2 parts only
  (symmetric). With ``diagonal_from_pairs`` (default) the acoustic sum rule is used as a
  prior: H_aa = node block − sym(Σ_{b≠a} H_ab). For an exact translation-invariant energy
  Σ_b H_ab = 0, so the head then only learns the (small) violation of that rule.

Hence H = Hᵀ holds bitwise: each stored off-diagonal value is written twice, once
transposed, and diagonal blocks are (S + Sᵀ)/2 (float addition commutes).

Energy and forces are the backbone's (autograd or direct forces, per the backbone). The
backbone's ``_predict(batch, pos, return_features=True)`` must also return ``node_scalar``
(N, F) invariant and ``node_vector`` (N, 3, F) equivariant features (LEFTNet does).

``compute_hessian=True`` returns the head's Hessian (flat per-molecule row-major blocks,
``hess_ptr`` as in :mod:`horm.models.base`), computed with no autograd Hessian: the model
declares ``hessian_mode = "direct"`` and gives :meth:`HessianHead._predict_hessian`; the one
forward of :class:`horm.models.base.Potential` calls it. The training loss for it is the
full-Hessian L1 term (``loss.full_hessian``, :func:`horm.train.losses.full_hessian_error`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from horm.data.batch import Batch
from horm.errors import UsageError
from horm.models.base import HessianMode, Potential
from horm.models.registry import build_model, register_model
from horm.models.graph import full_graph, scatter_sum
from horm.models.layers import GaussianBasis, mlp, vector_rms_norm



@dataclass
class HessianHeadConfig:
    backbone: str = "leftnet"  # registered backbone (must expose node features, see module docstring)
    backbone_preset: str = "tiny"  # preset of the backbone: "tiny" | "small" | "paper" | "horm"
    backbone_overrides: dict = field(default_factory=dict)  # backbone fields replacing its preset's
    head_channels: int = 32  # K: vector pairs (u_k, w_k) per block, and width of the head MLPs
    num_radial: int = 16  # Gaussians of the pair distance
    pair_cutoff: float = 8.0  # Å, Gaussian centres span [0, pair_cutoff]; blocks of farther pairs fade out
    hessian_scale: float = 10.0  # eV/Å², output unit of the head (DFT diagonal blocks are ~15 eV/Å²)
    diagonal_from_pairs: bool = True  # H_aa = node block − sym(Σ_b H_ab) (acoustic sum rule prior)
    eps: float = 0.3  # smoothing scale of the node-vector normalisation (feature units)

    def __post_init__(self):
        if self.backbone == "hessian_head":
            raise UsageError("hessian_head cannot be its own backbone; give e.g. backbone='leftnet'")
        if self.head_channels < 1 or self.num_radial < 1 or self.pair_cutoff <= 0 or self.hessian_scale <= 0:
            raise UsageError(f"invalid hessian_head size: {self}")


PRESETS = {
    "tiny": dict(backbone="leftnet", backbone_preset="tiny", head_channels=32, num_radial=16),
    # "small": the leftnet "small" backbone; one full-Hessian E-F-H step 0.30 CPU-s (batch 8, 1 thread;
    # benchmarks/preset_step.py), cheaper than autograd E-F-H on the same backbone (0.65): no double backward.
    "small": dict(backbone="leftnet", backbone_preset="small", head_channels=48, num_radial=24),
    "paper": dict(backbone="leftnet", backbone_preset="paper", head_channels=64, num_radial=32),
    "horm": dict(backbone="leftnet", backbone_preset="horm", head_channels=64, num_radial=32),
}


def irrep_block(alpha: torch.Tensor, u: torch.Tensor, w: torch.Tensor, gamma: torch.Tensor,
                beta: torch.Tensor | None = None) -> torch.Tensor:
    """3×3 blocks from the l = 0, 1, 2 parts (module docstring). Returns (M, 3, 3).

    alpha (M,) l = 0 coefficient; u, w (M, 3, K) equivariant vectors; gamma (M, K) l = 2
    coefficients; beta (M, K) l = 1 coefficients or None (symmetric blocks).
    """
    k = u.shape[-1]
    s = torch.einsum("mak,mbk,mk->mab", u, w, gamma) / math.sqrt(k)
    eye = torch.eye(3, dtype=u.dtype, device=u.device)
    trace = s.diagonal(dim1=1, dim2=2).sum(-1)
    out = 0.5 * (s + s.transpose(1, 2)) + (alpha - trace / 3.0)[:, None, None] * eye
    if beta is not None:
        t = torch.einsum("mak,mbk,mk->mab", u, w, beta) / math.sqrt(k)
        out = out + 0.5 * (t - t.transpose(1, 2))
    return out


class DirectHessianReadout(nn.Module):
    """Node features (N, F), (N, 3, F) + positions -> flat per-molecule Hessians (eV/Å²)."""

    def __init__(self, f: int, cfg: HessianHeadConfig):
        super().__init__()
        k, r = cfg.head_channels, cfg.num_radial
        self.k, self.eps, self.scale, self.sum_rule = k, cfg.eps, cfg.hessian_scale, cfg.diagonal_from_pairs
        self.norm = nn.LayerNorm(f)
        # diagonal blocks: u = P v_a, w = Q v_a; α, γ from (s_a, u·w)
        self.node_vec = nn.Linear(f, 2 * k, bias=False)
        self.node_coef = mlp(f + k, k, 1 + k)
        # off-diagonal blocks of the ordered pair (a, b): u = P v_a + ρ_u e, w = Q v_b + ρ_w e
        self.rbf = GaussianBasis(r, cfg.pair_cutoff)
        self.pair_vec = nn.Linear(f, 2 * k, bias=False)
        self.pair_mlp = mlp(2 * f + r + 3 * k, k, k)
        self.pair_coef = nn.Linear(k, 1 + 4 * k)  # α, γ (K), β (K), ρ_u (K), ρ_w (K)
        self.pair_env = nn.Linear(r, 1 + 2 * k, bias=False)  # → 0 with the Gaussians at long range
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=1.0 / math.sqrt(m.in_features))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, batch: Batch, pos: torch.Tensor, node_scalar: torch.Tensor,
                node_vector: torch.Tensor) -> torch.Tensor:
        k = self.k
        n = pos.shape[0]
        s = self.norm(node_scalar)  # (N, F)
        v = vector_rms_norm(node_vector, self.eps)  # (N, 3, F)

        # unordered pairs a < b of every molecule, each seen in both orientations
        ei = full_graph(batch.ptr.to(pos.device))
        keep = ei[0] < ei[1]
        a, b = ei[0][keep], ei[1][keep]
        npair = a.numel()
        src, dst = torch.cat([a, b]), torch.cat([b, a])  # ordered pairs (src, dst), 2P
        rij = pos[dst] - pos[src]
        d = torch.sqrt(rij.pow(2).sum(-1))
        e = rij / d[:, None]  # (2P, 3) unit bond vector src → dst
        rbf = self.rbf(d)
        pv, qv = torch.split(self.pair_vec(v), k, dim=-1)  # (N, 3, K) each
        pu, qw = pv[src], qv[dst]
        inv = torch.cat([s[src], s[dst], rbf, (pu * e[:, :, None]).sum(1), (qw * e[:, :, None]).sum(1),
                         (pu * qw).sum(1)], -1)
        coef = self.pair_coef(self.pair_mlp(inv))
        env = self.pair_env(rbf)
        alpha, gamma, beta, rho_u, rho_w = torch.split(coef, [1, k, k, k, k], dim=-1)
        alpha, gamma, beta = alpha * env[:, :1], gamma * env[:, 1:1 + k], beta * env[:, 1 + k:]
        u = pu + rho_u[:, None, :] * e[:, :, None]
        w = qw + rho_w[:, None, :] * e[:, :, None]
        bt = irrep_block(alpha.squeeze(-1), u, w, gamma, beta)  # (2P, 3, 3) B̃
        off = 0.5 * (bt[:npair] + bt[npair:].transpose(1, 2))  # H_ab for a < b

        # diagonal blocks
        nu, nw = torch.split(self.node_vec(v), k, dim=-1)
        ncoef = self.node_coef(torch.cat([s, (nu * nw).sum(1)], -1))
        diag = irrep_block(ncoef[:, 0], nu, nw, ncoef[:, 1:])  # (N, 3, 3), symmetric
        if self.sum_rule:
            row = scatter_sum(off, a, n) + scatter_sum(off.transpose(1, 2), b, n)  # Σ_{b≠a} H_ab
            diag = diag - 0.5 * (row + row.transpose(1, 2))

        # scatter into the flat (3n)² blocks, row-major over 3·atom + xyz
        blocks = torch.cat([diag, off, off.transpose(1, 2)]) * self.scale
        rows = torch.cat([torch.arange(n, device=pos.device), a, b])
        cols = torch.cat([torch.arange(n, device=pos.device), b, a])
        idx = _block_index(batch, rows, cols)  # (M, 3, 3)
        total = int(batch.hess_ptr[-1])
        return blocks.new_zeros(total).index_copy(0, idx.reshape(-1), blocks.reshape(-1))


def _block_index(batch: Batch, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Flat positions (M, 3, 3) of the 3×3 blocks (rows[m], cols[m]) (global atom indices,
    same molecule) in the concatenated row-major per-molecule Hessians."""
    ptr, mol = batch.ptr.to(rows.device), batch.batch.to(rows.device)
    m = mol[rows]
    n3 = 3 * batch.natoms.to(rows.device)[m]
    ra, cb = rows - ptr[m], cols - ptr[m]
    xyz = torch.arange(3, device=rows.device)
    base = batch.hess_ptr.to(rows.device)[m] + 3 * ra * n3 + 3 * cb
    return base[:, None, None] + xyz[None, :, None] * n3[:, None, None] + xyz[None, None, :]


@register_model("hessian_head")
class HessianHead(Potential):
    """A registry backbone (energy, forces) plus a direct Hessian head (see the module docstring)."""

    config_cls = HessianHeadConfig
    presets = PRESETS
    hessian_mode: ClassVar[HessianMode] = "direct"

    def __init__(self, cfg: HessianHeadConfig):
        super().__init__(cfg)
        self.backbone = build_model(cfg.backbone, cfg.backbone_preset, **cfg.backbone_overrides)
        if not type(self.backbone).exposes_features:
            raise UsageError(f"backbone {cfg.backbone!r} does not expose node features (exposes_features; "
                             f"_predict(batch, pos, return_features=True)); e.g. leftnet, leftnet-df, alphanet")
        self.forces_mode = self.backbone.forces_mode  # energy/forces exactly as the backbone's
        f = self._feature_width()
        self.head = DirectHessianReadout(f, cfg)

    def _feature_width(self) -> int:
        bb = self.backbone.cfg
        for name in ("hidden_channels", "sphere_channels", "hidden"):
            if hasattr(bb, name):
                return int(getattr(bb, name))
        raise UsageError(f"cannot tell the feature width of backbone {self.cfg.backbone!r}")

    def _predict(self, batch: Batch, pos: torch.Tensor, return_features: bool = False) -> dict[str, torch.Tensor]:
        """The backbone's energy and forces (exactly), with its node features when the head needs them."""
        return self.backbone._predict(batch, pos, return_features=return_features)

    def _predict_hessian(self, batch: Batch, pos: torch.Tensor, pred: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(batch, pos, pred["node_scalar"], pred["node_vector"])

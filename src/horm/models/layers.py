"""Building blocks shared by our own models (``leftnet``, ``alphanet``, ``equiformer_v2``,
``hessian_head``): smooth norms, MLPs, vector-feature normalisation, radial bases, frame
projections and the frame transition. No model imports another model's module; what two
of them share lives here. (The published networks in :mod:`horm.models.published` keep
their own copies, as the reference code has them.)
"""

from __future__ import annotations

import math

import torch
from torch import nn

from horm.models.envelope import polynomial_cutoff


def soft_norm(x: torch.Tensor, eps: float, dim: int = -1, keepdim: bool = False) -> torch.Tensor:
    """sqrt(|x|² + ε²): a norm that is smooth at 0."""
    return torch.sqrt(x.pow(2).sum(dim, keepdim=keepdim) + eps * eps)


def soft_unit(x: torch.Tensor, eps: float) -> torch.Tensor:
    """x / sqrt(|x|² + ε²) along the last axis: ≈ unit vector, → 0 smoothly as x → 0."""
    return x / soft_norm(x, eps, keepdim=True)


def soft_abs(x: torch.Tensor, eps: float) -> torch.Tensor:
    """sqrt(x² + ε²) − ε: an even, smooth stand-in for |x|."""
    return torch.sqrt(x * x + eps * eps) - eps


def mlp(*sizes: int, bias: bool = True) -> nn.Sequential:
    """Linear layers with SiLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b, bias=bias), nn.SiLU()]
    return nn.Sequential(*layers[:-1])


class ExpNormalRBF(nn.Module):
    """Radial basis exp(−β (e^{−d} − μ_k)²) · f(d), μ_k spread over [e^{−r_c}, 1], f the C² envelope."""

    def __init__(self, num_radial: int, cutoff: float):
        super().__init__()
        self.cutoff = cutoff
        lo = math.exp(-cutoff)
        self.register_buffer("means", torch.linspace(lo, 1.0, num_radial))
        self.register_buffer("betas", torch.full((num_radial,), (2.0 / num_radial * (1.0 - lo)) ** -2))

    def forward(self, d: torch.Tensor) -> torch.Tensor:  # (E,) -> (E, R)
        d = d[:, None]
        return polynomial_cutoff(d, self.cutoff) * torch.exp(-self.betas * (torch.exp(-d) - self.means) ** 2)


def vector_rms_norm(vec: torch.Tensor, eps: float) -> torch.Tensor:
    """Equivariant normalisation of vector features (N, 3, H): v / sqrt(mean_h |v_h|² + ε²)."""
    return vec / torch.sqrt(vec.pow(2).sum(1, keepdim=True).mean(2, keepdim=True) + eps * eps)


def lecun_init(module: nn.Module) -> None:
    """Weights ~ N(0, 1/fan_in), zero biases: keeps activations O(1) through deep stacks."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=1.0 / math.sqrt(m.in_features))
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def frame_project(vec: torch.Tensor, frame: torch.Tensor, eps: float, reflect: bool) -> torch.Tensor:
    """Coordinates of vector features (M, 3, H) in frames (M, 3, 3) (columns = axes) -> (M, 3H) invariants.

    Written as three broadcast multiply-adds per axis: much faster than a batched 3×3 matmul
    on CPU, also under vmap. Output order: [axis 0 | axis 1 | axis 2], H channels each.
    """
    out = []
    for k in range(3):
        p = frame[:, 0, k, None] * vec[:, 0] + frame[:, 1, k, None] * vec[:, 1] + frame[:, 2, k, None] * vec[:, 2]
        out.append(soft_abs(p, eps) if (reflect and k == 1) else p)
    return torch.cat(out, dim=-1)


class GaussianBasis(nn.Module):
    """exp(−(d − μ_k)² / (2 w²)), μ_k evenly on [0, r_max], w = ``width`` × their spacing. (E,) -> (E, R).

    ``width=2`` is EquiformerV2's smearing, ``width=1`` the Hessian head's sharper basis.
    """

    def __init__(self, num: int, r_max: float, width: float = 1.0):
        super().__init__()
        self.register_buffer("offsets", torch.linspace(0.0, r_max, num))
        self.sigma = width * r_max / max(num - 1, 1)

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        return torch.exp(-0.5 * ((d[:, None] - self.offsets) / self.sigma) ** 2)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        if prefix + "means" in state_dict:  # files written before this class was shared
            state_dict[prefix + "offsets"] = state_dict.pop(prefix + "means")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class FrameTransition(nn.Module):
    """FTE: vector features update the scalars through their norms, dot products and (with
    ``frame``) their coordinates in the node frames; the vectors are gated back.

    ``frame=True`` (LEFTNet): ``forward(s, vec, node_frame)`` also projects the vectors onto
    each node's local frame (``reflect``: the middle axis enters through a smooth |·|, so a
    reflected frame gives the same invariants). ``frame=False`` (AlphaNet): ``forward(s, vec)``.
    """

    def __init__(self, h: int, eps: float, frame: bool = True, reflect: bool = False):
        super().__init__()
        self.h, self.eps, self.frame, self.reflect = h, eps, frame, reflect
        self.norm = nn.LayerNorm(h)
        self.vec_proj = nn.Linear(h, 2 * h, bias=False)
        if frame:
            self.frame_lin = nn.Linear(3 * h, h)
        self.xvec_proj = mlp((3 if frame else 2) * h, h, 3 * h)

    def forward(self, s, vec, node_frame=None):
        s = self.norm(s)
        v1, v2 = torch.split(self.vec_proj(vector_rms_norm(vec, self.eps)), self.h, dim=-1)  # (N, 3, H) each
        parts = [s]
        if self.frame:
            parts.append(self.frame_lin(frame_project(v1, node_frame, self.eps, self.reflect)))  # (N, H)
        parts.append(soft_norm(v1, self.eps, dim=1))  # (N, H)
        dot = (v1 * v2).sum(1) / math.sqrt(self.h)
        a, b, c = torch.split(self.xvec_proj(torch.cat(parts, -1)), self.h, dim=-1)
        return (a + b * dot) / math.sqrt(2.0), c[:, None, :] * v2

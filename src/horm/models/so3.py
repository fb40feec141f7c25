"""Irreducible-representation features, Wigner-D rotations and eSCN SO(2) convolutions (plain torch + e3nn constants).

Features of degree l = 0 … L live in one tensor ``x`` (N, S, C), S = (L+1)², coefficient
index ``l² + l + m`` (m = −l … l) in e3nn's real basis. In that basis (e3nn ≥ 0.5) the l = 1
block is the Cartesian vector (x, y, z) itself, D¹(R) = R, and the pole of the spherical
harmonics is the **y axis**: a function of a direction along +y has only m = 0 coefficients.

eSCN (Passaro & Zitnick, ICML 2023), used by EquiformerV2 (Liao et al., ICLR 2024): rotate
the features of an edge so that the edge points along the pole; there an SO(3)-equivariant
tensor-product convolution reduces to SO(2)-equivariant linear maps that mix the (+m, −m)
pair of each order m like a complex multiplication, plus a free linear map on m = 0. Rotate
back and the result is equivariant again, whatever roll γ about the edge the frame had.

Choices made here (and why):

- **Wigner-D from rotation matrices by a polynomial recursion**, D^l = Cᵀ (D^{l−1} ⊗ D¹) C ·
  (2l+1), C = e3nn's wigner_3j(l−1, 1, l). No Euler angles: the usual route through
  (α, β) = atan2(…) has singular derivatives whenever an edge is parallel to the pole,
  which a Hessian (one more derivative) turns into NaN or noise. Here D is a polynomial in
  the entries of R, exact and smooth.
- **Edge frames** R_e (rows x', y' = ê, z') with x' the unit part of a helper axis
  orthogonal to ê. The helper is the Cartesian axis least aligned with ê (chosen on detached
  values), so x' is always well conditioned. The choice jumps between axes, but the SO(2)
  convolution does not depend on the roll about ê, so outputs and all their derivatives are
  unaffected (tested: equivariance of forces and Hessians to round-off).
- Only orders |m| ≤ mmax are kept in the edge frame (EquiformerV2's truncation); the
  edge-frame layout is [m = 0: l = 0…L | m = 1: +1 block, −1 block | m = 2: …], each
  block running over l = m … L.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from horm.errors import UsageError
from horm.models.graph import scatter_sum


def edge_frame_layout(lmax: int, mmax: int) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
    """Edge-frame coefficients kept for |m| ≤ mmax.

    Returns ``index`` (S',) long into the S = (L+1)² global coefficients, ``degree`` (S',) long
    (l of each kept coefficient) and ``blocks``: (offset, length) of the m = 0 block and then,
    for m = 1 … mmax, of the +m and −m blocks (length L − m + 1 each).
    """
    if not 0 <= mmax <= lmax:
        raise UsageError(f"mmax must be in [0, lmax={lmax}], got {mmax}")
    index, degree, blocks = [], [], []
    for m in range(mmax + 1):
        for sign in ((1,) if m == 0 else (1, -1)):
            blocks.append((len(index), lmax - m + 1))
            for l in range(m, lmax + 1):
                index.append(l * l + l + sign * m)
                degree.append(l)
    return torch.tensor(index), torch.tensor(degree), blocks


def degree_index(lmax: int) -> torch.Tensor:
    """(S,) degree l of every global coefficient."""
    return torch.cat([torch.full((2 * l + 1,), l) for l in range(lmax + 1)])


def edge_rotation(unit: torch.Tensor) -> torch.Tensor:
    """Rotations R (E, 3, 3), det +1, with R @ ê = ŷ for unit edge vectors ``unit`` (E, 3)."""
    with torch.no_grad():
        helper_axis = unit.abs().argmin(dim=-1)  # the axis least aligned with ê
    helper = nn.functional.one_hot(helper_axis, 3).to(unit.dtype)
    xp = helper - (helper * unit).sum(-1, keepdim=True) * unit  # |xp|² ≥ 2/3
    xp = xp / torch.sqrt(xp.pow(2).sum(-1, keepdim=True))
    zp = torch.linalg.cross(xp, unit)
    return torch.stack([xp, unit, zp], dim=1)


class WignerD(nn.Module):
    """Real Wigner-D matrices D^l(R), l = 0 … L, of rotation matrices R (E, 3, 3), in e3nn's basis."""

    def __init__(self, lmax: int):
        super().__init__()
        from e3nn import o3

        self.lmax = lmax
        # float64 constants, not buffers: a float32 round trip (.float().double()) would cost
        # equivariance at 1e-8; they are cast to the dtype/device of R at each call
        with torch.device("cpu"):  # constants: on the CPU even when the model is built on meta
            self._cg = {l: o3.wigner_3j(l - 1, 1, l, dtype=torch.float64).reshape((2 * l - 1) * 3, 2 * l + 1)
                        * math.sqrt(2 * l + 1) for l in range(2, lmax + 1)}

    def blocks(self, rot: torch.Tensor) -> list[torch.Tensor]:
        """[D⁰ (E,1,1), D¹ (E,3,3), …, D^L (E,2L+1,2L+1)]."""
        e = rot.shape[0]
        out = [rot.new_ones((e, 1, 1))]
        if self.lmax >= 1:
            out.append(rot)
        for l in range(2, self.lmax + 1):
            c = self._cg[l].to(device=rot.device, dtype=rot.dtype)
            prev = out[-1]
            kron = (prev[:, :, None, :, None] * rot[:, None, :, None, :]).reshape(e, 3 * (2 * l - 1), 3 * (2 * l - 1))
            out.append(c.T @ kron @ c)
        return out

    def forward(self, rot: torch.Tensor) -> torch.Tensor:
        """Block-diagonal D(R) (E, S, S)."""
        blocks = self.blocks(rot)
        s = (self.lmax + 1) ** 2
        d = rot.new_zeros((rot.shape[0], s, s))
        for l, b in enumerate(blocks):
            lo = l * l
            d[:, lo:lo + 2 * l + 1, lo:lo + 2 * l + 1] = b
        return d


class SO3Linear(nn.Module):
    """Per-degree linear map (N, S, C_in) -> (N, S, C_out); bias on l = 0 only (equivariant)."""

    def __init__(self, c_in: int, c_out: int, lmax: int, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(lmax + 1, c_out, c_in) / math.sqrt(c_in))
        self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None
        self.register_buffer("degree", degree_index(lmax), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.einsum("nsc,sdc->nsd", x, self.weight[self.degree])
        if self.bias is not None:
            out = torch.cat([out[:, :1] + self.bias, out[:, 1:]], dim=1)
        return out


class EquivariantRMSNorm(nn.Module):
    """EquiformerV2's ``rms_norm_sh``: centre the l = 0 channels, divide all degrees by one
    degree-balanced RMS (each l weighs the same), per-(l, channel) scale and an l = 0 bias."""

    def __init__(self, lmax: int, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(lmax + 1, channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        deg = degree_index(lmax)
        self.register_buffer("degree", deg, persistent=False)
        self.register_buffer("balance", 1.0 / ((2 * deg + 1) * (lmax + 1)).to(torch.get_default_dtype()),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0 = x[:, :1] - x[:, :1].mean(-1, keepdim=True)
        x = torch.cat([x0, x[:, 1:]], dim=1)
        ms = (x.pow(2).mean(-1) * self.balance.to(x.dtype)).sum(-1)  # (N,)
        x = x / torch.sqrt(ms + self.eps)[:, None, None] * self.weight[self.degree]
        return torch.cat([x[:, :1] + self.bias, x[:, 1:]], dim=1)


def gate(x: torch.Tensor, gates: torch.Tensor, degree: torch.Tensor) -> torch.Tensor:
    """Gate activation: SiLU on l = 0, l > 0 scaled by sigmoid(gate of that degree and channel).

    x (M, K, C) with ``degree`` (K,) the l of each coefficient; gates (M, L·C), L = max degree.
    """
    c = x.shape[-1]
    g = torch.sigmoid(gates.view(gates.shape[0], -1, c))  # (M, L, C)
    g = torch.cat([g.new_ones(g.shape[0], 1, c), g], dim=1)[:, degree]  # (M, K, C), 1 at l = 0
    out = x * g
    is0 = (degree == 0).to(x.dtype)[None, :, None]
    return out * (1 - is0) + nn.functional.silu(x) * is0


def smooth_leaky_relu(x: torch.Tensor, alpha: float = 0.2) -> torch.Tensor:
    """EquiformerV2's smooth leaky ReLU: ((1+α)/2) x + ((1−α)/2) x (2σ(x) − 1)."""
    return 0.5 * (1 + alpha) * x + 0.5 * (1 - alpha) * x * (2 * torch.sigmoid(x) - 1)


class RadialMLP(nn.Module):
    """Edge scalars -> per-coefficient weights: (Linear, LayerNorm, SiLU) × 2, Linear."""

    def __init__(self, sizes: list[int]):
        super().__init__()
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-2], sizes[1:-1]):
            layers += [nn.Linear(a, b), nn.LayerNorm(b), nn.SiLU()]
        layers.append(nn.Linear(sizes[-2], sizes[-1]))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SO2Convolution(nn.Module):
    """SO(2)-equivariant linear map on edge-frame features (E, S', C_in) -> (E, S', C_out).

    m = 0: one dense map over all degrees (with bias; m = 0 is invariant about the pole);
    m > 0: W_r, W_i over degrees l ≥ m acting on the (+m, −m) pair as a complex product,
    y₊ = W_r x₊ − W_i x₋, y₋ = W_r x₋ + W_i x₊. With ``edge_dim`` the inputs are first
    scaled by radial weights from the edge scalars (shared by +m and −m). ``extra_m0`` extra
    invariant outputs come from the m = 0 map (attention logits, gates). Returns (y, extra).
    """

    def __init__(self, c_in: int, c_out: int, lmax: int, mmax: int, edge_dim: int | None = None,
                 edge_hidden: int = 64, extra_m0: int = 0):
        super().__init__()
        self.c_in, self.c_out, self.extra = c_in, c_out, extra_m0
        _, _, self.blocks = edge_frame_layout(lmax, mmax)
        n0 = lmax + 1
        self.fc0 = nn.Linear(n0 * c_in, n0 * c_out + extra_m0)
        self.fcm = nn.ModuleList([nn.Linear((lmax - m + 1) * c_in, 2 * (lmax - m + 1) * c_out, bias=False)
                                  for m in range(1, mmax + 1)])
        self.rad_sizes = [n0 * c_in] + [(lmax - m + 1) * c_in for m in range(1, mmax + 1)]
        self.radial = RadialMLP([edge_dim, edge_hidden, edge_hidden, sum(self.rad_sizes)]) if edge_dim else None

    def forward(self, x: torch.Tensor, edge_feat: torch.Tensor | None = None):
        e = x.shape[0]
        rad = torch.split(self.radial(edge_feat), self.rad_sizes, dim=-1) if self.radial is not None else None
        off, n0 = self.blocks[0]
        x0 = x[:, off:off + n0].reshape(e, -1)
        if rad is not None:
            x0 = x0 * rad[0]
        y0 = self.fc0(x0)
        extra, y0 = y0[:, y0.shape[1] - self.extra:], y0[:, : n0 * self.c_out].reshape(e, n0, self.c_out)
        out = [y0]
        for k, lin in enumerate(self.fcm):
            (op, n), (om, _) = self.blocks[1 + 2 * k], self.blocks[2 + 2 * k]
            xp, xm = x[:, op:op + n].reshape(e, -1), x[:, om:om + n].reshape(e, -1)
            if rad is not None:
                xp, xm = xp * rad[k + 1], xm * rad[k + 1]
            wr_p, wi_p = lin(xp).chunk(2, dim=-1)
            wr_m, wi_m = lin(xm).chunk(2, dim=-1)
            out += [(wr_p - wi_m).reshape(e, n, self.c_out), (wr_m + wi_p).reshape(e, n, self.c_out)]
        return torch.cat(out, dim=1), extra


def rotate_to_edges(x: torch.Tensor, wigner: torch.Tensor) -> torch.Tensor:
    """Global features gathered per edge (E, S, C) -> edge frame (E, S', C); ``wigner`` (E, S', S)."""
    return torch.bmm(wigner, x)


def rotate_from_edges(x: torch.Tensor, wigner: torch.Tensor) -> torch.Tensor:
    """Edge-frame features (E, S', C) -> global frame (E, S, C) (Dᵀ, D orthogonal)."""
    return torch.bmm(wigner.transpose(1, 2), x)


def segment_softmax(logits: torch.Tensor, weight: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    """Softmax of ``logits`` (E, H) over edges that share ``index`` (E,), each term weighted by
    ``weight`` (E,) ≥ 0 (a cutoff envelope: an edge reaching the cutoff fades out of the sum
    continuously instead of dropping out of it)."""
    with torch.no_grad():
        shift = logits.new_full((n, logits.shape[1]), -torch.inf)
        shift = shift.scatter_reduce(0, index[:, None].expand_as(logits), logits, "amax", include_self=True)
        shift = torch.nan_to_num(shift, neginf=0.0)
    ex = torch.exp(logits - shift[index]) * weight[:, None]
    den = scatter_sum(ex, index, n)
    return ex / (den[index] + 1e-30)

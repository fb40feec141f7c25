"""SO(3) machinery of the published EquiformerV2 (HORM 8fc0be0 / HIP df045d7), written for exactness.

Features are plain tensors (N, S, C): S = (L+1)² coefficients in l-major order (index
l² + l + m, e3nn's real basis), or, inside an edge frame, the S' coefficients with |m| ≤ mmax
(still l-major). The modules here carry the buffers the reference checkpoints store
(``mapping.*``, ``to_grid_mat``, ``expand_index`` ...) under the same names, and the forward
passes use those *loaded* buffers wherever the reference does (``to_m``, the grid matrices),
so that a checkpoint is reproduced to round-off.

- Edge frames (:func:`edge_frames`): the reference ``init_edge_rot_mat``: rows
  (ẑ, x̂, −ŷ) with x̂ the edge direction and the roll about it fixed by a helper vector
  (``rand − 0.5`` of a uniform draw per edge, rotated by 90° when too aligned with the edge).
  The draw is an argument here (see :class:`EdgeRolls`).
- Wigner-D (:func:`wigner_from_frames`): the reference route (e3nn ``xyz_to_angles`` /
  ``angles_to_matrix`` → (α, β, γ) → X(α) J X(β) J X(γ) per degree). The reference loads the
  matrices J from a pickled ``Jd.pt``; we compute them from e3nn (:func:`j_matrix`, the Wigner-D
  of the 180° rotation about (x̂ + ŷ)/√2, which swaps x and y, times (−1)^l) and test that they agree to
  round-off with e3nn's own Wigner-D.
"""

from __future__ import annotations

import functools
import math

import torch
from e3nn import o3
from torch import nn

_Y_AXIS = (0.0, 1.0, 0.0)


class CoefficientMapping(nn.Module):
    """Index bookkeeping of the reference ``CoefficientMappingModule`` (same six buffers).

    ``to_m`` is the permutation l-major → m-major ([m=0: l=0…L | m=1: +1 (l=1…L), −1 (l=1…L) | …]).
    """

    def __init__(self, lmax_list: list[int], mmax_list: list[int]):
        super().__init__()
        self.lmax_list, self.mmax_list = list(lmax_list), list(mmax_list)
        l_h, m_c, res = [], [], []
        for lmax, mmax in zip(lmax_list, mmax_list):
            start = len(l_h)
            for l in range(lmax + 1):
                mm = min(mmax, l)
                for m in range(-mm, mm + 1):
                    l_h.append(l)
                    m_c.append(m)
            res.append(len(l_h) - start)
        l_harmonic, m_complex = torch.tensor(l_h, dtype=torch.long), torch.tensor(m_c, dtype=torch.long)
        n = len(l_h)
        to_m = torch.zeros(n, n)
        m_size = torch.zeros(max(mmax_list) + 1, dtype=torch.long)
        row, top = 0, max(lmax_list)
        for m in range(max(mmax_list) + 1):
            for sign in ((1,) if m == 0 else (1, -1)):
                idx = [k for k in range(n) if l_h[k] <= top and m_c[k] == sign * m]
                for k in idx:
                    to_m[row, k] = 1.0
                    row += 1
                if sign == 1:
                    m_size[m] = len(idx)
        self.register_buffer("l_harmonic", l_harmonic)
        self.register_buffer("m_harmonic", m_complex.abs())
        self.register_buffer("m_complex", m_complex)
        self.register_buffer("res_size", torch.tensor(res, dtype=torch.long))
        self.register_buffer("to_m", to_m)
        self.register_buffer("m_size", m_size)

    def coefficient_idx(self, lmax: int, mmax: int) -> torch.Tensor:
        """Indices (l-major) of the coefficients with l ≤ lmax and |m| ≤ mmax."""
        mask = (self.l_harmonic <= lmax) & (self.m_harmonic <= mmax)
        return torch.nonzero(mask).reshape(-1)

    def rotate_inv_rescale(self, lmax: int, mmax: int, dtype, device) -> torch.Tensor:
        """(1, S, S') factors sqrt((2l+1)/(2·mmax+1)) for l > mmax (the reference's m-truncation)."""
        r = torch.ones((1, (lmax + 1) ** 2, (lmax + 1) ** 2), dtype=dtype, device=device)
        for l in range(mmax + 1, lmax + 1):
            r[:, l * l:(l + 1) ** 2, l * l:(l + 1) ** 2] = math.sqrt((2 * l + 1) / (2 * mmax + 1))
        return r[:, :, self.coefficient_idx(lmax, mmax)]

    def m_primary(self, x: torch.Tensor) -> torch.Tensor:
        """(E, S', C) l-major → m-major, through the loaded ``to_m`` as the reference does."""
        return torch.einsum("nac, ba -> nbc", x, self.to_m.to(x.dtype))

    def l_primary(self, x: torch.Tensor) -> torch.Tensor:
        """(E, S', C) m-major → l-major."""
        return torch.einsum("nac, ab -> nbc", x, self.to_m.to(x.dtype))


# --- edge frames and Wigner-D ----------------------------------------------------------------
def edge_frames(vec: torch.Tensor, rand: torch.Tensor) -> torch.Tensor:
    """(E, 3, 3) frames, rows (ẑ, x̂, −ŷ), x̂ = vec/|vec|; ``rand`` (E, 3) uniform in [0, 1) fixes the roll.

    The reference ``init_edge_rot_mat`` op for op (not detached here: the caller decides).
    """
    norm_x = vec / torch.sqrt(torch.sum(vec ** 2, dim=1)).view(-1, 1)
    v2 = rand.to(vec.dtype) - 0.5
    v2 = v2 / torch.sqrt(torch.sum(v2 ** 2, dim=1)).view(-1, 1)
    v2b = torch.stack([-v2[:, 1], v2[:, 0], v2[:, 2]], dim=1)
    v2c = torch.stack([v2[:, 0], -v2[:, 2], v2[:, 1]], dim=1)
    dot_b = torch.abs(torch.sum(v2b * norm_x, dim=1)).view(-1, 1)
    dot_c = torch.abs(torch.sum(v2c * norm_x, dim=1)).view(-1, 1)
    dot = torch.abs(torch.sum(v2 * norm_x, dim=1)).view(-1, 1)
    v2 = torch.where(torch.gt(dot, dot_b), v2b, v2)
    dot = torch.abs(torch.sum(v2 * norm_x, dim=1)).view(-1, 1)
    v2 = torch.where(torch.gt(dot, dot_c), v2c, v2)
    if v2.numel() and float(torch.abs(torch.sum(v2 * norm_x, dim=1)).detach().max()) >= 0.99:
        raise ValueError("edge frame: helper vector aligned with an edge (reference assertion)")
    norm_z = torch.cross(norm_x, v2, dim=1)
    norm_z = norm_z / torch.sqrt(torch.sum(norm_z ** 2, dim=1, keepdim=True))
    norm_z = norm_z / torch.sqrt(torch.sum(norm_z ** 2, dim=1)).view(-1, 1)
    norm_y = torch.cross(norm_x, norm_z, dim=1)
    norm_y = norm_y / torch.sqrt(torch.sum(norm_y ** 2, dim=1, keepdim=True))
    inv = torch.cat([norm_z.view(-1, 3, 1), norm_x.view(-1, 3, 1), -norm_y.view(-1, 3, 1)], dim=2)
    return torch.transpose(inv, 1, 2)


@functools.lru_cache(maxsize=None)
def _j_matrix_f64(l: int) -> torch.Tensor:
    # e3nn builds its generators in the default dtype: compute them in float64
    saved = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        swap_xy = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
        j = (-1) ** l * o3.Irrep(l, 1).D_from_matrix(swap_xy)
    finally:
        torch.set_default_dtype(saved)
    return torch.where(j.abs() < 1e-12, torch.zeros_like(j), j)  # exact zeros, as in e3nn 0.4's table


def j_matrix(l: int, dtype=torch.float64, device=None) -> torch.Tensor:
    """J_l of e3nn 0.4's ``wigner_D(l, α, β, γ) = X(α) J X(β) J X(γ)`` (the reference's ``Jd[l]``)."""
    return _j_matrix_f64(l).to(dtype=dtype, device=device)


def z_rot_mat(angle: torch.Tensor, l: int) -> torch.Tensor:
    """(…, 2l+1, 2l+1) rotation about e3nn's pole in the degree-l block (reference ``_z_rot_mat``)."""
    m = angle.new_zeros((*angle.shape, 2 * l + 1, 2 * l + 1))
    inds = torch.arange(0, 2 * l + 1, 1, device=angle.device)
    rev = torch.arange(2 * l, -1, -1, device=angle.device)
    freq = torch.arange(l, -l - 1, -1, dtype=angle.dtype, device=angle.device)
    m[..., inds, rev] = torch.sin(freq * angle[..., None])
    m[..., inds, inds] = torch.cos(freq * angle[..., None])
    return m


def wigner_from_frames(rot: torch.Tensor, lmax: int) -> torch.Tensor:
    """(E, S, S) block-diagonal Wigner-D of the frames, degrees 0 … lmax (reference route)."""
    x = rot @ rot.new_tensor(_Y_AXIS)
    alpha, beta = o3.xyz_to_angles(x)
    r = o3.angles_to_matrix(alpha, beta, torch.zeros_like(alpha)).transpose(-1, -2) @ rot
    gamma = torch.atan2(r[..., 0, 2], r[..., 0, 0])
    blocks = []
    for l in range(lmax + 1):
        j = j_matrix(l, alpha.dtype, alpha.device)
        blocks.append(z_rot_mat(alpha, l) @ j @ z_rot_mat(beta, l) @ j @ z_rot_mat(gamma, l))
    return _block_diag(blocks)


def _block_diag(blocks: list[torch.Tensor]) -> torch.Tensor:
    n = sum(b.shape[-1] for b in blocks)
    rows, start = [], 0
    for b in blocks:
        d = b.shape[-1]
        left = b.new_zeros(b.shape[0], d, start)
        right = b.new_zeros(b.shape[0], d, n - start - d)
        rows.append(torch.cat([left, b, right], dim=2))
        start += d
    return torch.cat(rows, dim=1)


class SO3Rotation(nn.Module):
    """Holds one forward's Wigner-D matrices (reference ``SO3_Rotation``; buffers: ``mapping.*``).

    ``set_wigner(rot, detach)``: the reference detaches them (so no derivative flows through
    the edge frames); ``detach=False`` keeps that dependence (a true Jacobian of the forces).
    """

    def __init__(self, lmax: int):
        super().__init__()
        self.lmax = lmax
        self.mapping = CoefficientMapping([lmax], [lmax])
        self.wigner: torch.Tensor | None = None
        self.wigner_inv: torch.Tensor | None = None

    def set_wigner(self, rot: torch.Tensor, detach: bool = True) -> None:
        w = wigner_from_frames(rot, self.lmax)
        w_inv = torch.transpose(w, 1, 2).contiguous()
        self.wigner, self.wigner_inv = (w.detach(), w_inv.detach()) if detach else (w, w_inv)

    def rotate(self, x: torch.Tensor, lmax: int, mmax: int) -> torch.Tensor:
        """(E, S, C) global → (E, S', C) edge frame, |m| ≤ mmax."""
        return torch.bmm(self.wigner[:, self.mapping.coefficient_idx(lmax, mmax), :], x)

    def rotate_inv(self, x: torch.Tensor, lmax: int, mmax: int) -> torch.Tensor:
        """(E, S', C) edge frame → (E, S, C) global, with the reference's degree rescaling."""
        w = self.wigner_inv[:, :, self.mapping.coefficient_idx(lmax, mmax)]
        w = w * self.mapping.rotate_inv_rescale(lmax, mmax, x.dtype, x.device)
        return torch.bmm(w, x)


class SO3Grid(nn.Module):
    """Projections between coefficients (l ≤ lmax, |m| ≤ mmax) and a lat × long S² grid (``SO3_Grid``)."""

    def __init__(self, lmax: int, mmax: int, resolution: int | None = None, normalization: str = "component"):
        super().__init__()
        self.lmax, self.mmax = lmax, mmax
        lat = 2 * (lmax + 1)
        lon = 2 * (mmax + 1) + 1 if lmax == mmax else 2 * mmax + 1
        if resolution is not None:
            lat = lon = resolution
        with torch.device("cpu"):  # constants, computed on the CPU even when the model is built on meta
            self.mapping = CoefficientMapping([lmax], [lmax])
            f32 = torch.float32
            to_grid = o3.ToS2Grid(lmax, (lat, lon), normalization=normalization, dtype=f32)
            to_mat = torch.einsum("mbi, am -> bai", to_grid.shb, to_grid.sha).detach()
            from_grid = o3.FromS2Grid((lat, lon), lmax, normalization=normalization, dtype=f32)
            from_mat = torch.einsum("am, mbi -> bai", from_grid.sha, from_grid.shb).detach()
            keep = self.mapping.coefficient_idx(lmax, mmax)
        self.register_buffer("to_grid_mat", self._rescale(to_mat)[:, :, keep].contiguous())
        self.register_buffer("from_grid_mat", self._rescale(from_mat)[:, :, keep].contiguous())

    def _rescale(self, mat: torch.Tensor) -> torch.Tensor:
        if self.lmax == self.mmax:
            return mat
        mat = mat.clone()
        for l in range(self.mmax + 1, self.lmax + 1):
            mat[:, :, l * l:(l + 1) ** 2] = mat[:, :, l * l:(l + 1) ** 2] * math.sqrt((2 * l + 1) / (2 * self.mmax + 1))
        return mat

    def to_grid(self, x: torch.Tensor) -> torch.Tensor:
        """(N, S', C) → (N, lat·lon, C), grid points flattened (lat-major, as the reference's (lat, lon))."""
        return torch.matmul(self.to_grid_mat.to(x.dtype).reshape(-1, x.shape[1]), x)

    def from_grid(self, g: torch.Tensor) -> torch.Tensor:
        """(N, lat·lon, C) → (N, S', C)."""
        mat = self.from_grid_mat.to(g.dtype)
        return torch.matmul(mat.reshape(-1, mat.shape[-1]).t(), g)


def make_grids(lmax: int, resolution: int | None) -> nn.ModuleList:
    """``SO3_grid[l][m]`` for l, m = 0 … lmax (the reference builds all (lmax+1)² of them)."""
    return nn.ModuleList(nn.ModuleList(SO3Grid(l, m, resolution) for m in range(lmax + 1))
                         for l in range(lmax + 1))


class SO3LinearV2(nn.Module):
    """Per-degree linear map of (N, (L+1)², C_in) → C_out; bias on l = 0 (reference ``SO3_LinearV2``)."""

    def __init__(self, in_features: int, out_features: int, lmax: int):
        super().__init__()
        self.in_features, self.out_features, self.lmax = in_features, out_features, lmax
        bound = 1 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(lmax + 1, out_features, in_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.register_buffer("expand_index", torch.repeat_interleave(  # output_size: meta-buildable
            torch.arange(lmax + 1), torch.tensor([2 * l + 1 for l in range(lmax + 1)]), output_size=(lmax + 1) ** 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.index_select(self.weight, dim=0, index=self.expand_index)
        out = torch.einsum("bmi, moi -> bmo", x, w)
        return torch.cat([out.narrow(1, 0, 1) + self.bias.view(1, 1, -1), out.narrow(1, 1, out.shape[1] - 1)], dim=1)

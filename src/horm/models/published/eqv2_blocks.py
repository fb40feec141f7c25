"""Layers of the published EquiformerV2 (eval mode), with the reference's module names and buffers.

Each class mirrors one reference class (``GaussianSmearing``, ``RadialFunction``,
``EquivariantLayerNormArraySphericalHarmonics``, ``SO2_Convolution``, ``SO2EquivariantGraphAttention``,
``FeedForwardNetwork``, ``TransBlockV2``, ``EdgeDegreeEmbedding``) so that the state-dict keys
match the checkpoints; the shared helpers (``SO3_rotation``, ``mappingReduced``, ``SO3_grid``)
are the *same* module objects in every layer, as in the reference, which is why their buffers
appear under many (aliased) keys. Only the configuration the published models use is
implemented: ``norm_type='layer_norm_sh'``, separable S² activation, grid MLP in the FFN,
attention re-normalisation, atom-edge embeddings per block, no dropout (eval mode).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from horm.models.published.eqv2_so3 import CoefficientMapping, SO3LinearV2

_NEG_SLOPE = 0.2


class GaussianSmearing(nn.Module):
    """exp(coeff·(d − offset)²); ``coeff`` a Python float fixed from the float32 linspace (as the reference)."""

    def __init__(self, start: float, stop: float, num: int, width: float):
        super().__init__()
        offset = torch.linspace(start, stop, num, dtype=torch.float32, device="cpu")  # a constant: CPU even
        self.num_output = num                                                        # under a meta build
        self.coeff = -0.5 / (width * (offset[1] - offset[0])).item() ** 2
        self.register_buffer("offset", offset)

    def forward(self, dist: torch.Tensor) -> torch.Tensor:
        d = dist.view(-1, 1) - self.offset.to(dist.dtype).view(1, -1)
        return torch.exp(self.coeff * torch.pow(d, 2))


class RadialFunction(nn.Module):
    """Linear → LayerNorm → SiLU → … → Linear over ``channels`` (keys ``net.0``, ``net.1``, ``net.3`` …)."""

    def __init__(self, channels: list[int]):
        super().__init__()
        mods: list[nn.Module] = []
        for i in range(1, len(channels)):
            mods.append(nn.Linear(channels[i - 1], channels[i]))
            if i < len(channels) - 1:
                mods += [nn.LayerNorm(channels[i]), nn.SiLU()]
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class LayerNormSH(nn.Module):
    """LayerNorm on l = 0; one RMS scale over all l > 0 with degree-balanced weights (``layer_norm_sh``)."""

    def __init__(self, lmax: int, channels: int, eps: float = 1e-5):
        super().__init__()
        self.lmax, self.eps = lmax, eps
        self.norm_l0 = nn.LayerNorm(channels, eps=eps)
        self.affine_weight = nn.Parameter(torch.ones(lmax, channels))
        w = torch.zeros((lmax + 1) ** 2 - 1, 1)
        for l in range(1, lmax + 1):
            w[l * l - 1:l * l - 1 + 2 * l + 1] = 1.0 / (2 * l + 1)
        self.register_buffer("balance_degree_weight", w / lmax)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = [self.norm_l0(x.narrow(1, 0, 1))]
        feat = x.narrow(1, 1, x.shape[1] - 1).pow(2)
        norm = torch.einsum("nic, ia -> nac", feat, self.balance_degree_weight.to(x.dtype))
        norm = (torch.mean(norm, dim=2, keepdim=True) + self.eps).pow(-0.5)
        for l in range(1, self.lmax + 1):
            scale = norm * self.affine_weight.narrow(0, l - 1, 1).view(1, 1, -1)
            out.append(x.narrow(1, l * l, 2 * l + 1) * scale)
        return torch.cat(out, dim=1)


def smooth_leaky_relu(x: torch.Tensor) -> torch.Tensor:
    a = _NEG_SLOPE
    return ((1 + a) / 2) * x + ((1 - a) / 2) * x * (2 * torch.sigmoid(x) - 1)


def separable_s2_act(scalars: torch.Tensor, x: torch.Tensor, grid) -> torch.Tensor:
    """SiLU on the gating scalars for l = 0, SiLU on the S² grid for l > 0.

    The grid projections run as two plain GEMMs over all edges and channels at once (faster
    than per-edge batched products; the Hessian rows are dominated by this op).
    """
    e, n, c = x.shape
    s = F.silu(scalars).reshape(e, 1, scalars.shape[-1])
    g = grid.to_grid_mat.to(x.dtype).reshape(-1, n) @ x.transpose(0, 1).reshape(n, e * c)
    g = F.silu(g)
    t = grid.from_grid_mat.to(x.dtype).reshape(-1, n).t() @ g
    t = t.reshape(n, e, c).transpose(0, 1)
    return torch.cat([s, t.narrow(1, 1, n - 1)], dim=1)


def segment_softmax(src: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    """torch_geometric.utils.softmax: exp(s − max) / (Σ exp + 1e-16) per target node."""
    idx = index.view(-1, *([1] * (src.dim() - 1))).expand_as(src)
    src_max = src.new_zeros((n,) + tuple(src.shape[1:])).scatter_reduce(
        0, idx, src.detach(), reduce="amax", include_self=False)
    out = (src - src_max.index_select(0, index)).exp()
    total = out.new_zeros((n,) + tuple(src.shape[1:])).index_add(0, index, out) + 1e-16
    return out / total.index_select(0, index)


class SO2mConv(nn.Module):
    """The (+m, −m) pair of one order m: a linear map acting like a complex multiplication."""

    def __init__(self, m: int, in_channels: int, out_channels: int, lmax: int):
        super().__init__()
        n = (lmax - m + 1) * in_channels
        self.fc = nn.Linear(n, 2 * out_channels * (lmax - m + 1), bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc(x)
        half = self.fc.out_features // 2
        xr, xi = x.narrow(2, 0, half), x.narrow(2, half, half)
        return torch.cat((xr.narrow(1, 0, 1) - xi.narrow(1, 1, 1), xr.narrow(1, 1, 1) + xi.narrow(1, 0, 1)), dim=1)


class SO2Convolution(nn.Module):
    """SO(2) convolution in the edge frame for all orders m ≤ mmax (reference ``SO2_Convolution``)."""

    def __init__(self, in_channels: int, out_channels: int, lmax: int, mmax: int, mapping: CoefficientMapping,
                 edge_channels: list[int] | None = None, extra_m0: int | None = None):
        super().__init__()
        self.out_channels, self.lmax, self.mmax, self.extra_m0 = out_channels, lmax, mmax, extra_m0
        self.mappingReduced = mapping
        m0_out = out_channels * (lmax + 1) + (extra_m0 or 0)
        self.fc_m0 = nn.Linear((lmax + 1) * in_channels, m0_out)
        self.so2_m_conv = nn.ModuleList(SO2mConv(m, in_channels, out_channels, lmax) for m in range(1, mmax + 1))
        self.rad_func = None
        if edge_channels is not None:
            n_rad = self.fc_m0.in_features + sum(c.fc.in_features for c in self.so2_m_conv)
            self.rad_func = RadialFunction(list(edge_channels) + [n_rad])

    def forward(self, x: torch.Tensor, x_edge: torch.Tensor):
        e = x.shape[0]
        x = self.mappingReduced.m_primary(x)
        if self.rad_func is not None:
            x_edge = self.rad_func(x_edge)
        sizes = [int(s) for s in self.mappingReduced.m_size]
        x0 = x.narrow(1, 0, sizes[0]).reshape(e, -1)
        if self.rad_func is not None:
            x0 = x0 * x_edge.narrow(1, 0, self.fc_m0.in_features)
        x0 = self.fc_m0(x0)
        extra = None
        if self.extra_m0 is not None:
            extra = x0.narrow(-1, 0, self.extra_m0)
            x0 = x0.narrow(-1, self.extra_m0, self.fc_m0.out_features - self.extra_m0)
        out = [x0.view(e, -1, self.out_channels)]
        offset, off_rad = sizes[0], self.fc_m0.in_features
        for m in range(1, self.mmax + 1):
            conv = self.so2_m_conv[m - 1]
            xm = x.narrow(1, offset, 2 * sizes[m]).reshape(e, 2, -1)
            if self.rad_func is not None:
                xm = xm * x_edge.narrow(1, off_rad, conv.fc.in_features).reshape(e, 1, -1)
            out.append(conv(xm).view(e, -1, self.out_channels))
            offset, off_rad = offset + 2 * sizes[m], off_rad + conv.fc.in_features
        out = self.mappingReduced.l_primary(torch.cat(out, dim=1))
        return (out, extra) if self.extra_m0 is not None else out


def _edge_scalars(emb_src: nn.Embedding, emb_tgt: nn.Embedding, z: torch.Tensor, dist: torch.Tensor,
                  edge_index: torch.Tensor) -> torch.Tensor:
    return torch.cat((dist, emb_src(z[edge_index[0]]), emb_tgt(z[edge_index[1]])), dim=1)


class Shared:
    """The helper modules every layer references: rotations, reduced mapping, grids, sizes."""

    def __init__(self, rotation: nn.ModuleList, mapping: CoefficientMapping, grid: nn.ModuleList,
                 lmax: int, mmax: int, num_elements: int, edge_channels: list[int]):
        self.rotation, self.mapping, self.grid = rotation, mapping, grid
        self.lmax, self.mmax, self.num_elements = lmax, mmax, num_elements
        self.edge_channels = list(edge_channels)


class GraphAttention(nn.Module):
    """``SO2EquivariantGraphAttention``: SO(2) conv → separable S² act → SO(2) conv, attention, sum, project."""

    def __init__(self, sh: Shared, channels: int, hidden: int, heads: int, alpha_ch: int, value_ch: int, out: int):
        super().__init__()
        self.heads, self.alpha_ch, self.value_ch, self.lmax, self.mmax = heads, alpha_ch, value_ch, sh.lmax, sh.mmax
        self.alpha_dot = nn.Parameter(torch.empty(heads, alpha_ch).uniform_(-1 / math.sqrt(alpha_ch), 1 / math.sqrt(alpha_ch)))
        self.SO3_rotation, self.mappingReduced, self.SO3_grid = sh.rotation, sh.mapping, sh.grid
        edge_ch = list(sh.edge_channels)
        self.source_embedding = nn.Embedding(sh.num_elements, edge_ch[-1])
        self.target_embedding = nn.Embedding(sh.num_elements, edge_ch[-1])
        edge_ch[0] = edge_ch[0] + 2 * edge_ch[-1]
        self.so2_conv_1 = SO2Convolution(2 * channels, hidden, sh.lmax, sh.mmax, sh.mapping, edge_ch,
                                         extra_m0=heads * alpha_ch + hidden)
        self.alpha_norm = nn.LayerNorm(alpha_ch)
        self.so2_conv_2 = SO2Convolution(hidden, heads * value_ch, sh.lmax, sh.mmax, sh.mapping)
        self.proj = SO3LinearV2(heads * value_ch, out, lmax=sh.lmax)

    def messages(self, x: torch.Tensor, z: torch.Tensor, dist: torch.Tensor, edge_index: torch.Tensor):
        """Edge-frame messages after the second SO(2) conv (E, S', heads·value) and the attention logits' input."""
        x_edge = _edge_scalars(self.source_embedding, self.target_embedding, z, dist, edge_index)
        msg = torch.cat((x[edge_index[0]], x[edge_index[1]]), dim=2)
        msg = self.SO3_rotation[0].rotate(msg, self.lmax, self.mmax)
        msg, extra = self.so2_conv_1(msg, x_edge)
        n_alpha = self.heads * self.alpha_ch
        gating, x_alpha = extra.narrow(1, n_alpha, extra.shape[1] - n_alpha), extra.narrow(1, 0, n_alpha)
        msg = separable_s2_act(gating, msg, self.SO3_grid[self.lmax][self.mmax])
        return self.so2_conv_2(msg, x_edge), x_alpha

    def rotate_back(self, msg: torch.Tensor) -> torch.Tensor:
        return self.SO3_rotation[0].rotate_inv(msg, self.lmax, self.mmax)

    def forward(self, x: torch.Tensor, z: torch.Tensor, dist: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        msg, x_alpha = self.messages(x, z, dist, edge_index)
        a = smooth_leaky_relu(self.alpha_norm(x_alpha.reshape(-1, self.heads, self.alpha_ch)))
        alpha = segment_softmax(torch.einsum("bik, ik -> bi", a, self.alpha_dot), edge_index[1], x.shape[0])
        e, s = msg.shape[0], msg.shape[1]
        msg = (msg.reshape(e, s, self.heads, self.value_ch) * alpha.reshape(e, 1, self.heads, 1)).reshape(e, s, -1)
        msg = self.rotate_back(msg)
        agg = msg.new_zeros((x.shape[0],) + tuple(msg.shape[1:])).index_add(0, edge_index[1], msg)
        return self.proj(agg)


class FeedForward(nn.Module):
    """``FeedForwardNetwork`` with grid MLP and separable S² activation."""

    def __init__(self, sh: Shared, channels: int, hidden: int, out: int):
        super().__init__()
        self.lmax = sh.lmax
        self.SO3_grid = sh.grid
        self.so3_linear_1 = SO3LinearV2(channels, hidden, lmax=sh.lmax)
        self.scalar_mlp = nn.Sequential(nn.Linear(channels, hidden), nn.SiLU())
        self.grid_mlp = nn.Sequential(nn.Linear(hidden, hidden, bias=False), nn.SiLU(),
                                      nn.Linear(hidden, hidden, bias=False), nn.SiLU(),
                                      nn.Linear(hidden, hidden, bias=False))
        self.so3_linear_2 = SO3LinearV2(hidden, out, lmax=sh.lmax)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gating = self.scalar_mlp(x.narrow(1, 0, 1))
        grid = self.SO3_grid[self.lmax][self.lmax]
        h = grid.from_grid(self.grid_mlp(grid.to_grid(self.so3_linear_1(x))))
        return self.so3_linear_2(torch.cat((gating, h.narrow(1, 1, h.shape[1] - 1)), dim=1))


class TransBlock(nn.Module):
    """``TransBlockV2``: x + attention(norm_1 x), then + FFN(norm_2 ·)."""

    def __init__(self, sh: Shared, channels: int, hidden: int, heads: int, alpha_ch: int, value_ch: int, ffn: int):
        super().__init__()
        self.norm_1 = LayerNormSH(sh.lmax, channels)
        self.ga = GraphAttention(sh, channels, hidden, heads, alpha_ch, value_ch, channels)
        self.norm_2 = LayerNormSH(sh.lmax, channels)
        self.ffn = FeedForward(sh, channels, ffn, channels)

    def forward(self, x: torch.Tensor, z: torch.Tensor, dist: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        x = self.ga(self.norm_1(x), z, dist, edge_index) + x
        return self.ffn(self.norm_2(x)) + x


class EdgeDegreeEmbedding(nn.Module):
    """Initial l ≥ 0 node features: radial m = 0 messages rotated back and summed / ``rescale_factor``."""

    def __init__(self, sh: Shared, channels: int, rescale_factor: float):
        super().__init__()
        self.channels, self.lmax, self.mmax, self.rescale_factor = channels, sh.lmax, sh.mmax, rescale_factor
        self.SO3_rotation, self.mappingReduced = sh.rotation, sh.mapping
        edge_ch = list(sh.edge_channels)
        self.source_embedding = nn.Embedding(sh.num_elements, edge_ch[-1])
        self.target_embedding = nn.Embedding(sh.num_elements, edge_ch[-1])
        edge_ch[0] = edge_ch[0] + 2 * edge_ch[-1]
        self.rad_func = RadialFunction(edge_ch + [(sh.lmax + 1) * channels])

    def forward(self, z: torch.Tensor, dist: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        x_edge = _edge_scalars(self.source_embedding, self.target_embedding, z, dist, edge_index)
        m0 = int(self.mappingReduced.m_size[0])
        x = self.rad_func(x_edge).reshape(-1, m0, self.channels)
        pad = x.new_zeros(x.shape[0], len(self.mappingReduced.l_harmonic) - m0, self.channels)
        x = self.mappingReduced.l_primary(torch.cat((x, pad), dim=1))
        x = self.SO3_rotation[0].rotate_inv(x, self.lmax, self.mmax)
        agg = x.new_zeros((z.shape[0],) + tuple(x.shape[1:])).index_add(0, edge_index[1], x)
        return agg / self.rescale_factor

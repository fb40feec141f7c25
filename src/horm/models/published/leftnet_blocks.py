"""Building blocks of HORM's published LEFTNet (the ``model.*`` part of its checkpoint).

Module and attribute names follow the checkpoint's keys (``model.gcl_layers.0.edge_mlp.mlp.0.
linear.weight`` ...) so that the state dict loads strictly; the network itself and its quirks
are described in :mod:`horm.models.published.leftnet`. Edge convention of the reference
(torch_geometric's ``source_to_target`` flow): for an edge e = (edge_index[0], edge_index[1])
= (src, dst), messages are built from the *source* and summed at the *destination*, while the
edge frames and the GCL messages use ``i = edge_index[0]``, ``j = edge_index[1]``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from horm.models.graph import scatter_mean, scatter_sum

EPS = 1e-6  # the reference's EPS, added to norms *after* the square root


def safe_sqrt(x: torch.Tensor) -> torch.Tensor:
    """sqrt with the zero subgradient at exactly 0 (torch.sqrt's gradient there is inf, times 0 = NaN).

    Values and all derivatives at x > 0 are those of torch.sqrt, bit for bit; only the
    reference's NaN derivatives at an exactly zero norm (see the module docstring of
    :mod:`horm.models.published.leftnet`) become finite.
    """
    ok = x > 0
    return torch.where(ok, torch.sqrt(torch.where(ok, x, torch.ones_like(x))), torch.zeros_like(x))


def _norm(x: torch.Tensor) -> torch.Tensor:
    """|x| over axis 1 as the reference writes it, (M, 1), without the NaN gradient at 0."""
    return safe_sqrt(torch.sum(x ** 2, 1).unsqueeze(1))


def legacy_cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.cross(a, b)`` without ``dim`` as the reference calls it: the first axis of size 3.

    For (N, 3) tensors that is the xyz axis, except when N == 3 (three atoms in the whole
    batch), where torch takes axis 0, i.e. the cross product runs *across atoms*.
    """
    dim = next(d for d, n in enumerate(a.shape) if n == 3)
    return torch.linalg.cross(a, b, dim=dim)


class _Dense(nn.Module):
    """The reference's ``OneLayerActivation``: ``linear`` then an optional SiLU."""

    def __init__(self, n_in: int, n_out: int, bias: bool, act: bool):
        super().__init__()
        self.linear = nn.Linear(n_in, n_out, bias=bias)
        self.activation = nn.SiLU() if act else nn.Identity()

    def forward(self, x):
        return self.activation(self.linear(x))


class MLP(nn.Module):
    """The reference's core ``MLP``: ``mlp.<k>.linear``, SiLU after every layer (or all but the last)."""

    def __init__(self, n_in: int, dims: list[int], bias: bool = True, last_act: bool = True):
        super().__init__()
        layers, d = [], n_in
        for k, n in enumerate(dims):
            layers.append(_Dense(d, n, bias, last_act or k < len(dims) - 1))
            d = n
        self.mlp = nn.Sequential(*layers)

    def forward(self, x):
        return self.mlp(x)


class GatedMLP(nn.Module):
    """``mlp(x) * sigmoid(gmlp(x))``, both without activation on the last layer."""

    def __init__(self, n_in: int, dims: list[int]):
        super().__init__()
        self.mlp = MLP(n_in, dims, last_act=False)
        self.gmlp = MLP(n_in, dims, last_act=False)

    def forward(self, x):
        return self.mlp(x) * torch.sigmoid(self.gmlp(x))


class RBFEmb(nn.Module):
    """exp-normal radial basis times a cosine envelope that is 0 beyond ``cutoff``; means/betas are buffers."""

    def __init__(self, num_rbf: int, cutoff: float):
        super().__init__()
        self.cutoff = cutoff
        start, end = math.exp(-cutoff), 1.0
        self.register_buffer("means", torch.linspace(start, end, num_rbf))
        self.register_buffer("betas", torch.full((num_rbf,), (2 / num_rbf * (end - start)) ** -2))

    def forward(self, dist):
        d = dist.unsqueeze(-1)
        env = 0.5 * (torch.cos(d * math.pi / self.cutoff) + 1.0) * (d < self.cutoff).to(d.dtype)
        return env * torch.exp(-self.betas * torch.square(torch.exp(-d) - self.means))


class NeighborEmb(nn.Module):
    """s + Σ_src f_e · LN(W h_src), summed at dst."""

    def __init__(self, hidden: int, n_in: int):
        super().__init__()
        self.embedding = nn.Linear(n_in, hidden)
        self.ln_emb = nn.LayerNorm(hidden, elementwise_affine=False)

    def forward(self, h, s, edge_index, f):
        x = self.ln_emb(self.embedding(h))
        return s + scatter_sum(f * x[edge_index[0]], edge_index[1], s.shape[0])


class CFConvS2V(nn.Module):
    """Scalars to vectors: Σ_src f_e ê_e lin1(s)_src, summed at dst; (N, 3, H)."""

    def __init__(self, hidden: int):
        super().__init__()
        self.lin1 = nn.Sequential(nn.Linear(hidden, hidden), nn.LayerNorm(hidden, elementwise_affine=False),
                                  nn.SiLU())

    def forward(self, s, unit, edge_index, f):
        x = self.lin1(s)
        msg = (f.unsqueeze(1) * unit.unsqueeze(-1)) * x[edge_index[0]].unsqueeze(1)
        return scatter_sum(msg, edge_index[1], s.shape[0])


class GCLMessage(nn.Module):
    """Edge-feature update (legacy GCL): returns (LN(x) + node_mlp, edge + edge_out_trans(m))."""

    def __init__(self, hidden: int, num_radial: int):
        super().__init__()
        self.edge_mlp = MLP(5 * hidden + num_radial, [hidden, hidden])
        self.node_mlp = MLP(2 * hidden, [hidden, hidden], last_act=False)
        self.edge_out_trans = MLP(hidden, [3 * hidden + num_radial])
        self.att_mlp = MLP(hidden, [1])
        self.x_layernorm = nn.LayerNorm(hidden)

    def forward(self, x, edge_index, edgeh):
        xh = self.x_layernorm(x)
        i, j = edge_index
        m = self.edge_mlp(torch.cat([xh[i], xh[j], edgeh], dim=1))
        m = m * self.att_mlp(m)
        agg = scatter_mean(m, i, xh.shape[0])
        xh = xh + self.node_mlp(torch.cat([xh, agg], dim=1))
        return xh, edgeh + self.edge_out_trans(m)


class EquiMessage(nn.Module):
    """Equivariant message (reflect_equiv=True: no cross-product term); sums at dst."""

    def __init__(self, hidden: int, num_radial: int):
        super().__init__()
        self.hidden = hidden
        self.dir_proj = nn.Sequential(nn.Linear(3 * hidden + num_radial, 3 * hidden), nn.SiLU(),
                                      nn.Linear(3 * hidden, 3 * hidden))
        self.x_proj = nn.Sequential(nn.Linear(hidden, hidden, bias=False), nn.SiLU(),
                                    nn.Linear(hidden, 3 * hidden, bias=False))
        self.rbf_proj = nn.Linear(num_radial, 3 * hidden, bias=False)
        self.x_layernorm = nn.LayerNorm(hidden)
        self.inv_sqrt_3 = 1 / math.sqrt(3.0)
        self.inv_sqrt_h = 1 / math.sqrt(hidden)

    def forward(self, x, vec, edge_index, edge_rbf, weight, edge_vector):
        xh = self.x_proj(self.x_layernorm(x))
        rbfh = self.rbf_proj(edge_rbf) * self.dir_proj(weight)
        src, dst = edge_index
        dx, xh2, xh3 = torch.split((xh[src] + xh[dst]) * rbfh, self.hidden, dim=-1)
        xh2 = xh2 * self.inv_sqrt_3
        dvec = vec[src] * xh2.unsqueeze(1) + xh3.unsqueeze(1) * edge_vector.unsqueeze(2)
        dvec = dvec * self.inv_sqrt_h
        n = x.shape[0]
        return scatter_sum(dx, dst, n), scatter_sum(dvec, dst, n)


def frame_coords(vec: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
    """(M, 3, H) vectors in (M, 3, 3) frames (axes in columns) -> (M, 3, H) coordinates, |axis-2 coord|."""
    c = torch.sum(vec.unsqueeze(2) * frame.unsqueeze(-1), dim=1)
    return torch.stack([c[:, 0], torch.abs(c[:, 1]), c[:, 2]], dim=1)


class EquiUpdate(nn.Module):
    """Frame transition encoding: node-frame coordinates of vec1 -> scalars; gated vector update."""

    def __init__(self, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.vec_proj = nn.Linear(hidden, 2 * hidden, bias=False)
        self.xvec_proj = nn.Sequential(nn.Linear(2 * hidden, hidden, bias=False), nn.SiLU(),
                                       nn.Linear(hidden, 3 * hidden, bias=False))
        self.lin3 = nn.Sequential(nn.Linear(3, 48), nn.SiLU(), nn.Linear(48, 8), nn.SiLU(), nn.Linear(8, 1))
        self.inv_sqrt_2 = 1 / math.sqrt(2.0)
        self.inv_sqrt_h = 1 / math.sqrt(hidden)

    def forward(self, x, vec, nodeframe):
        vec1, vec2 = torch.split(self.vec_proj(vec), self.hidden, dim=-1)
        scalar = self.lin3(frame_coords(vec1, nodeframe).permute(0, 2, 1)).squeeze(-1)
        vec_dot = (vec1 * vec2).sum(dim=1) * self.inv_sqrt_h
        xvec1, xvec2, xvec3 = torch.split(self.xvec_proj(torch.cat([x, scalar], dim=-1)), self.hidden, dim=-1)
        dx = (xvec1 + xvec2 + vec_dot) * self.inv_sqrt_2
        return dx, xvec3.unsqueeze(1) * vec2


class GatedEquivariantBlock(nn.Module):
    """Schütt et al. (2021) gated block: (x, v) -> (x', gate · W v)."""

    def __init__(self, hidden: int, out: int):
        super().__init__()
        self.out = out
        self.vec1_proj = nn.Linear(hidden, hidden, bias=False)
        self.vec2_proj = nn.Linear(hidden, out, bias=False)
        self.update_net = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, 2 * out))

    def forward(self, x, v):
        vec1 = torch.norm(self.vec1_proj(v), dim=-2)
        x, gate = torch.split(self.update_net(torch.cat([x, vec1], dim=-1)), self.out, dim=-1)
        return x, gate.unsqueeze(1) * self.vec2_proj(v)


class EquiOutput(nn.Module):
    """The vector head ``out_pos`` (single_layer_output=True: one gated block to 1 channel)."""

    def __init__(self, hidden: int):
        super().__init__()
        self.output_network = nn.ModuleList([GatedEquivariantBlock(hidden, 1)])

    def forward(self, x, vec):
        for layer in self.output_network:
            x, vec = layer(x, vec)
        return x, vec.squeeze(-1)


def cutoff_groups(edge_index: torch.Tensor, n: int) -> torch.Tensor:
    """The reference's ``assemble_nodemask``: greedy grouping of atoms over the cutoff edges.

    Atoms in index order; an atom not yet grouped opens a new group holding itself and its
    direct neighbours (overwriting their earlier group). Returns (n,) long group ids.
    """
    src, dst = edge_index.detach().cpu().numpy()
    order = np.argsort(src, kind="stable")
    starts = np.searchsorted(src[order], np.arange(n + 1))
    group = np.full(n, -1, dtype=np.int64)
    k = 0
    for c in range(n):
        if group[c] > -1:
            continue
        group[dst[order[starts[c]:starts[c + 1]]]] = k
        group[c] = k
        k += 1
    return torch.from_numpy(group).to(edge_index.device)


def edge_frames(pos: torch.Tensor, edge_index: torch.Tensor):
    """The reference's ``scalarization``: distance, unit bond vector, unit cross, their cross (+EPS norms)."""
    i, j = edge_index
    diff = pos[i] - pos[j]
    dist = safe_sqrt(diff.pow(2).sum(dim=-1))
    cross = legacy_cross(pos[i], pos[j])
    diff = diff / (_norm(diff) + EPS)
    cross = cross / (_norm(cross) + EPS)
    return dist, diff, cross, legacy_cross(diff, cross)


def node_frames(pos_frame: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
    """Legacy node frame (x1, y1, z1) in columns, (N, 3, 3): a = position, b = mean of the sources.

    On a fully connected, centred group b = −a/(N−1) exactly, so a × b is rounding noise and
    y1 = (a × b)/(|a × b| + EPS) is that noise divided by EPS (kept: it is the reference).
    """
    a = pos_frame
    b = scatter_mean(pos_frame[edge_index[0]], edge_index[1], a.shape[0])
    x1 = (a - b) / (_norm(a - b) + EPS)
    y1 = legacy_cross(a, b)
    y1 = y1 / (_norm(y1) + EPS)
    z1 = legacy_cross(x1, y1)
    return torch.stack([x1, y1, z1], dim=-1)


class LEFTNetCore(nn.Module):
    """HORM's ``LEFTNet`` with its training flags (legacy, reflect_equiv, update, ff; no pos_grad)."""

    def __init__(self, num_layers: int, hidden: int, num_radial: int, cutoff: float, n_in: int = 8):
        super().__init__()
        self.cutoff = cutoff
        self.inv_sqrt_2 = 1 / math.sqrt(2.0)
        self.embedding = nn.Linear(n_in, hidden)
        self.embedding_out = nn.Linear(hidden, n_in)  # in the checkpoint, unused by the potential
        self.radial_emb = RBFEmb(num_radial, cutoff)
        self.neighbor_emb = NeighborEmb(hidden, n_in)
        self.s2v = CFConvS2V(hidden)
        self.radial_lin = nn.Sequential(nn.Linear(num_radial, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.lin3 = nn.Sequential(nn.Linear(3, hidden // 4), nn.SiLU(), nn.Linear(hidden // 4, 1))
        self.pos_expansion = MLP(3, [hidden // 2, hidden], bias=False, last_act=False)
        self.distance_embedding = MLP(num_radial, [hidden // 2, hidden], bias=False)  # unused
        self.gcl_layers = nn.ModuleList(GCLMessage(hidden, num_radial) for _ in range(num_layers))
        self.message_layers = nn.ModuleList(EquiMessage(hidden, num_radial) for _ in range(num_layers))
        self.update_layers = nn.ModuleList(EquiUpdate(hidden) for _ in range(num_layers))
        self.last_layer = nn.Linear(hidden, 1)  # unused
        self.out_pos = EquiOutput(hidden)

    def _edge_inputs(self, h, pos, edge_index):
        """Cutoff mask, edge frames, radial features, initial scalars s and edge weights."""
        i, j = edge_index
        n = pos.shape[0]
        mask = ((pos[i] - pos[j]).pow(2).sum(dim=-1).sqrt() < self.cutoff).to(pos.dtype).unsqueeze(-1)
        groups = cutoff_groups(edge_index[:, mask.squeeze(-1) > 0], n)
        n_groups = int(groups.max()) + 1 if n else 0
        pos_frame = pos - scatter_mean(pos, groups, n_groups)[groups]
        dist, diff, cross, vert = edge_frames(pos_frame, edge_index)
        dist = dist * mask.squeeze(-1)
        diff, cross, vert = diff * mask, cross * mask, vert * mask
        frame = torch.stack([diff, cross, vert], dim=-1)
        radial_emb = self.radial_emb(dist) * mask
        rbounds = 0.5 * (torch.cos(dist * math.pi / self.cutoff) + 1.0)
        f = rbounds.unsqueeze(-1) * self.radial_lin(radial_emb)
        s = self.neighbor_emb(h, self.embedding(h), edge_index, f)
        ne1 = self.s2v(s, diff, edge_index, f)
        lse = []
        for nodes in (i, j):
            c = frame_coords(ne1[nodes], frame).permute(0, 2, 1)
            lse.append((self.lin3(c) + c[:, :, 0].unsqueeze(2)).squeeze(-1))
        edgeweight = torch.cat([torch.cat(lse, dim=-1) * rbounds.unsqueeze(-1), f, radial_emb], dim=-1)
        return s, edgeweight, radial_emb, diff, pos_frame

    def forward(self, h, pos, edge_index, vector_head: bool = True):
        """Final scalars (N, H) and, with ``vector_head``, the vector head's output (N, 3)."""
        s, edgeweight, radial_emb, diff, pos_frame = self._edge_inputs(h, pos, edge_index)
        nodeframe = node_frames(pos_frame, edge_index)
        pos_prjt = torch.sum(pos_frame.unsqueeze(-1) * nodeframe, dim=1)
        vec = s.new_zeros(s.shape[0], 3, s.shape[1])
        for gcl, message, update in zip(self.gcl_layers, self.message_layers, self.update_layers):
            s = s + self.pos_expansion(pos_prjt)
            s, edgeweight = gcl(s, edge_index, edgeweight)
            dx, dvec = message(s, vec, edge_index, radial_emb, edgeweight, diff)
            s = (s + dx) * self.inv_sqrt_2
            vec = vec + dvec
            dx, dvec = update(s, vec, nodeframe)
            s, vec = s + dx, vec + dvec
        return s, (self.out_pos(s, vec)[1] if vector_head else None)

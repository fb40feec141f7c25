"""Neighbour lists and scatter reductions in plain torch (no torch-scatter / PyG).

Edge convention: ``edge_index`` is (2, E) long with ``edge_index[0] = i`` (the centre that
receives the message) and ``edge_index[1] = j`` (the neighbour that sends it). Graphs are
symmetric (i→j present iff j→i present), have no self-loops, and never connect atoms of
different molecules. Edges are built from detached positions: the graph is a discrete
choice, so derivatives flow only through the geometry computed on it; with a smooth cutoff
that vanishes at ``cutoff`` the energy stays continuous when a pair crosses it.
"""

from __future__ import annotations

from typing import Literal

import torch

from horm.errors import UsageError

GraphKind = Literal["radius", "full"]
GRAPH_KINDS = ("radius", "full")


def scatter_sum(src: torch.Tensor, index: torch.Tensor, dim_size: int) -> torch.Tensor:
    """Sum rows of ``src`` (E, ...) into ``dim_size`` bins given by ``index`` (E,)."""
    out = src.new_zeros((dim_size,) + tuple(src.shape[1:]))
    return out.index_add(0, index, src)


def scatter_mean(src: torch.Tensor, index: torch.Tensor, dim_size: int) -> torch.Tensor:
    """Mean of rows of ``src`` per bin; empty bins give 0."""
    total = scatter_sum(src, index, dim_size)
    count = torch.zeros(dim_size, dtype=src.dtype, device=src.device).index_add(
        0, index, torch.ones_like(index, dtype=src.dtype))
    return total / count.clamp(min=1).view((-1,) + (1,) * (src.dim() - 1))


def full_graph(ptr: torch.Tensor) -> torch.Tensor:
    """All ordered pairs (i, j), i ≠ j, inside each molecule. ptr: (B+1,) atom offsets.

    Returns edge_index (2, Σ_b n_b (n_b − 1)).
    """
    ptr = ptr.long()
    natoms = ptr[1:] - ptr[:-1]
    n_tot = int(ptr[-1])
    dev = ptr.device
    mol = torch.repeat_interleave(torch.arange(natoms.numel(), device=dev), natoms)
    per_atom = natoms[mol]  # candidate neighbours of each atom (incl. itself)
    i = torch.repeat_interleave(torch.arange(n_tot, device=dev), per_atom)
    start = torch.cumsum(per_atom, 0) - per_atom
    k = torch.arange(i.numel(), device=dev) - torch.repeat_interleave(start, per_atom)
    j = ptr[mol[i]] + k
    keep = i != j
    return torch.stack([i[keep], j[keep]])


def radius_graph(pos: torch.Tensor, ptr: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Pairs (i, j), i ≠ j, of the same molecule with |r_i − r_j| < cutoff (Å). Returns (2, E)."""
    edge_index = full_graph(ptr)
    with torch.no_grad():
        p = pos.detach()
        d2 = (p[edge_index[0]] - p[edge_index[1]]).pow(2).sum(-1)
        keep = d2 < cutoff * cutoff
    return edge_index[:, keep]


def build_graph(kind: GraphKind, pos: torch.Tensor, ptr: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Neighbour list of the given kind ("radius": within ``cutoff``; "full": all intra-molecule pairs)."""
    if kind == "radius":
        return radius_graph(pos, ptr, cutoff)
    if kind == "full":
        return full_graph(ptr)
    raise UsageError(f"unknown graph kind {kind!r}; valid: {', '.join(GRAPH_KINDS)}")

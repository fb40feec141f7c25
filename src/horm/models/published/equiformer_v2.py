"""HORM's published EquiformerV2 (direct forces), ``horm-equiformer_v2``.

The network of deepprinciple/HORM 8fc0be0 (``nets/equiformer_v2/equiformer_v2_oc20.py``,
built from ``equiformer_v2.yml``), written here so that its Lightning checkpoint loads strictly
(same ``state_dict`` keys, aliased buffers included) and reproduces the reference outputs in
eval mode. Layers: :mod:`.eqv2_blocks`; SO(3) helpers: :mod:`.eqv2_so3`.

Quirks of the reference, reproduced (defaults give the reference's numbers):

- **Detached edge frames.** ``init_edge_rot_mat`` and ``set_wigner`` detach the edge frames
  and Wigner-D matrices, so forces — and the Hessian HORM computes as their Jacobian — see
  only the radial path (|r_ij| through the Gaussians). That "Hessian" is not symmetric and
  differs O(1) from finite differences of the forces. ``detach_frames=False`` keeps the
  frames' dependence on the positions: then the Hessian is the true Jacobian of the forces
  (it matches finite differences; a switch that changes the physics, so off by default).
- **Random roll per edge.** The reference draws ``torch.rand_like`` per edge on every call
  for the roll of each edge frame; the finite S² grid and m-truncation make outputs depend
  on it at ~1e-7 relative. Here ``roll="fixed"`` (default) uses the same helper vector
  (0.8, 0.3, 0.65) − 0.5 for every edge: deterministic, independent of the batch, with the
  reference's 90° fallback when it is too aligned with the edge. ``roll="random"`` draws as
  the reference does (global RNG). :meth:`replay_rolls` replays recorded draws (tests).
- **Energy scale.** The summed node energies are divided by the code constant 77.81317
  (``_AVG_NUM_NODES``, an OC20 statistic, not in the checkpoint): ``avg_num_nodes``.
- **Graph.** All pairs closer than ``max_radius`` (12 Å) within a molecule, in
  torch_cluster's order (target-major). The reference calls ``radius_graph`` with its
  default cap of 32 neighbours per atom (which neighbours survive depends on torch_cluster);
  we never truncate and warn once when an atom has more than ``max_neighbors``.
- ``forward`` of the reference also computes an unused cross-Hessian block on every call;
  dropped (no output depends on it). Dropout/drop-path are not implemented: eval mode only.
- Positions are centred per molecule inside ``_predict``, as HORM's ``compute_extra_props``.

What differs from the reference code: plain tensors instead of ``SO3_Embedding`` objects;
no in-place writes (so autograd/vmap see a functional graph); Jd matrices computed from e3nn
instead of loaded from ``Jd.pt``; no torch_geometric/torch_cluster/torch_scatter.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from horm.data.batch import Batch
from horm.models.base import Potential
from horm.models.registry import register_model
from horm.models.graph import full_graph, scatter_mean, scatter_sum
from horm.models.published import CheckpointFormat, register_checkpoint_format
from horm.models.published.eqv2_blocks import (EdgeDegreeEmbedding, FeedForward, GaussianSmearing, GraphAttention,
                                               LayerNormSH, Shared, TransBlock)
from horm.models.published.eqv2_so3 import CoefficientMapping, SO3Rotation, edge_frames, make_grids

log = logging.getLogger(__name__)

AVG_DEGREE = 23.395238876342773  # reference _AVG_DEGREE (edge-degree embedding rescale)
AVG_NUM_NODES = 77.81317  # reference _AVG_NUM_NODES (HORM energy divisor)
NUM_GAUSSIANS = 600  # hard-coded in the reference (num_distance_basis is ignored)
FIXED_ROLL = (0.8, 0.3, 0.65)
RollMode = Literal["fixed", "random"]


@dataclass
class PublishedEquiformerV2Config:
    """Constructor arguments of the reference that change the network (see module docstring)."""

    max_radius: float = 12.0
    max_neighbors: int = 32
    max_num_elements: int = 90
    num_layers: int = 4
    sphere_channels: int = 128
    attn_hidden_channels: int = 64
    num_heads: int = 4
    attn_alpha_channels: int = 64
    attn_value_channels: int = 16
    ffn_hidden_channels: int = 128
    lmax: int = 4
    mmax: int = 2
    grid_resolution: int = 18
    edge_channels: int = 128
    avg_degree: float = AVG_DEGREE
    avg_num_nodes: float | None = AVG_NUM_NODES
    roll: RollMode = "fixed"
    detach_frames: bool = True


PUBLISHED = dict(max_radius=12.0, num_layers=4, sphere_channels=128, attn_hidden_channels=64, num_heads=4,
                 attn_alpha_channels=64, attn_value_channels=16, ffn_hidden_channels=128, edge_channels=128)
SMALL = dict(PUBLISHED, num_layers=2, sphere_channels=16, attn_hidden_channels=16, num_heads=2,
             attn_alpha_channels=8, attn_value_channels=4, ffn_hidden_channels=16, edge_channels=16)


def _check(cfg) -> None:
    if cfg.roll not in ("fixed", "random"):
        raise ValueError(f"roll {cfg.roll!r}; valid: fixed, random")
    if not 0 <= cfg.mmax <= cfg.lmax:
        raise ValueError(f"need 0 <= mmax <= lmax, got lmax={cfg.lmax}, mmax={cfg.mmax}")
    if cfg.max_radius <= 0 or cfg.num_layers < 0 or cfg.sphere_channels < 1:
        raise ValueError("max_radius must be > 0, num_layers >= 0, sphere_channels >= 1")


@register_model("horm-equiformer_v2")
class PublishedEquiformerV2(Potential):
    """HORM's EquiformerV2, direct forces; ``energy`` is the ``ae`` scale plus ``atom_ref``."""

    forces_mode = "direct"
    config_cls = PublishedEquiformerV2Config
    presets: ClassVar[dict[str, dict[str, Any]]] = {"published": PUBLISHED, "small": SMALL}

    def __init__(self, cfg: PublishedEquiformerV2Config):
        super().__init__(cfg)
        _check(cfg)
        c = cfg
        self.sphere_embedding = nn.Embedding(c.max_num_elements, c.sphere_channels)
        self.distance_expansion = GaussianSmearing(0.0, c.max_radius, NUM_GAUSSIANS, 2.0)
        self.SO3_rotation = nn.ModuleList([SO3Rotation(c.lmax)])
        self.mappingReduced = CoefficientMapping([c.lmax], [c.mmax])
        self.SO3_grid = make_grids(c.lmax, c.grid_resolution)
        sh = Shared(self.SO3_rotation, self.mappingReduced, self.SO3_grid, c.lmax, c.mmax, c.max_num_elements,
                    [NUM_GAUSSIANS, c.edge_channels, c.edge_channels])
        self.edge_degree_embedding = EdgeDegreeEmbedding(sh, c.sphere_channels, c.avg_degree)
        self.blocks = nn.ModuleList(self._block(sh) for _ in range(c.num_layers))
        self.norm = LayerNormSH(c.lmax, c.sphere_channels)
        self.energy_block = FeedForward(sh, c.sphere_channels, c.ffn_hidden_channels, 1)
        self.force_block = self._attention(sh, 1)
        self._replay: dict[str, torch.Tensor] | None = None
        self._warned_neighbors = False

    def _attention(self, sh: Shared, out: int) -> GraphAttention:
        c = self.cfg
        return GraphAttention(sh, c.sphere_channels, c.attn_hidden_channels, c.num_heads, c.attn_alpha_channels,
                              c.attn_value_channels, out)

    def _block(self, sh: Shared) -> TransBlock:
        c = self.cfg
        return TransBlock(sh, c.sphere_channels, c.attn_hidden_channels, c.num_heads, c.attn_alpha_channels,
                          c.attn_value_channels, c.ffn_hidden_channels)

    # --- rolls ----------------------------------------------------------------------------
    def replay_rolls(self, main: torch.Tensor | None, hessian: torch.Tensor | None = None) -> None:
        """Use these uniform draws (E, 3), aligned with the reference's edge order, in every forward.

        ``main`` for the force/energy graph, ``hessian`` for HIP's Hessian graph; ``None``
        returns to the configured ``roll`` mode.
        """
        draws = {k: v for k, v in (("main", main), ("hessian", hessian)) if v is not None}
        for k, v in draws.items():
            if v.dim() != 2 or v.shape[1] != 3 or not torch.isfinite(v).all():
                raise ValueError(f"replay_rolls: {k} draws must be a finite (E, 3) tensor, got {tuple(v.shape)}")
        self._replay = draws or None

    def _rolls(self, which: str, vec: torch.Tensor) -> torch.Tensor:
        if self._replay is not None and which in self._replay:
            r = self._replay[which]
            if r.shape[0] != vec.shape[0]:
                raise ValueError(f"replay_rolls: {which} has {r.shape[0]} draws for {vec.shape[0]} edges")
            return r.to(device=vec.device, dtype=vec.dtype)
        if self.cfg.roll == "random":
            return torch.rand_like(vec)
        return vec.new_tensor(FIXED_ROLL).expand_as(vec)

    # --- graph ----------------------------------------------------------------------------
    def _graph(self, pos: torch.Tensor, ptr: torch.Tensor, cutoff: float, cap: int | None):
        """Reference-convention edges (row 0 source j, row 1 target i; target-major), vectors r_j − r_i."""
        ij = full_graph(ptr)
        with torch.no_grad():
            d2 = (pos.detach()[ij[0]] - pos.detach()[ij[1]]).pow(2).sum(-1)
        ij = ij[:, d2 < cutoff * cutoff]
        if cap is not None and ij.shape[1] and not self._warned_neighbors:
            most = int(torch.bincount(ij[0]).max())
            if most > cap:
                self._warned_neighbors = True
                log.warning("an atom has %d neighbours within %.1f Å; the reference keeps at most %d "
                            "(torch_cluster's choice), we keep all", most, cutoff, cap)
        edge_index = torch.stack([ij[1], ij[0]])
        vec = pos[edge_index[0]] - pos[edge_index[1]]
        return edge_index, vec

    def _set_frames(self, rotations: nn.ModuleList, vec: torch.Tensor, which: str) -> None:
        rot = edge_frames(vec, self._rolls(which, vec))
        detach = self.cfg.detach_frames
        for r in rotations:
            r.set_wigner(rot.detach() if detach else rot, detach=detach)

    # --- network --------------------------------------------------------------------------
    def _centred(self, batch: Batch, pos: torch.Tensor) -> torch.Tensor:
        return pos - scatter_mean(pos, batch.batch, batch.num_graphs)[batch.batch]

    def _trunk(self, batch: Batch, pos: torch.Tensor) -> dict[str, torch.Tensor]:
        """Node features after the final norm, plus the main graph (for the heads)."""
        c = self.cfg
        z = batch.numbers.long()
        if z.numel() and (int(z.min()) < 0 or int(z.max()) >= c.max_num_elements):
            raise ValueError(f"atomic numbers must be in [0, {c.max_num_elements}), got {int(z.min())}…{int(z.max())}")
        edge_index, vec = self._graph(pos, batch.ptr, c.max_radius, c.max_neighbors)
        self._set_frames(self.SO3_rotation, vec, "main")
        dist = self.distance_expansion(vec.norm(dim=-1))
        emb = self.sphere_embedding(z)
        x = torch.cat([emb.unsqueeze(1), emb.new_zeros(emb.shape[0], (c.lmax + 1) ** 2 - 1, emb.shape[1])], dim=1)
        x = x + self.edge_degree_embedding(z, dist, edge_index)
        for blk in self.blocks:
            x = blk(x, z, dist, edge_index)
        return {"x": self.norm(x), "z": z, "dist": dist, "edge_index": edge_index}

    def _energy(self, batch: Batch, x: torch.Tensor) -> torch.Tensor:
        node = self.energy_block(x).narrow(1, 0, 1).reshape(-1)
        energy = scatter_sum(node, batch.batch, batch.num_graphs)
        if self.cfg.avg_num_nodes is not None:
            return energy / self.cfg.avg_num_nodes
        return energy / (batch.natoms.sum() / batch.num_graphs).to(energy.dtype)

    def _predict(self, batch: Batch, pos: torch.Tensor, return_features: bool = False) -> dict[str, torch.Tensor]:
        """Energy (B,) and forces (N_tot, 3); ``return_features`` adds the trunk's outputs ("trunk") and
        the centred positions ("centred"), what HIP's Hessian head reads."""
        centred = self._centred(batch, pos)
        t = self._trunk(batch, centred)
        forces = self.force_block(t["x"], t["z"], t["dist"], t["edge_index"]).narrow(1, 1, 3).reshape(-1, 3)
        out = {"energy": self._energy(batch, t["x"]), "forces": forces}
        if return_features:
            out.update(trunk=t, centred=centred)
        return out


# --- checkpoint format -----------------------------------------------------------------------
def _count(sd, prefix: str, suffix: str) -> int:
    """Number of indices k with ``prefix + k + suffix`` in the state dict."""
    pat = re.compile(re.escape(prefix) + r"(\d+)" + re.escape(suffix) + "$")
    return len({m.group(1) for k in sd if (m := pat.match(k))})


def infer_backbone_config(hparams, sd) -> dict[str, Any]:
    """Sizes of the EquiformerV2 trunk from state-dict shapes (checked against saved hparams where present)."""
    mc = dict((hparams or {}).get("model_config") or {})
    for flag, want in (("norm_type", "layer_norm_sh"), ("use_grid_mlp", True), ("use_sep_s2_act", True),
                       ("use_gate_act", False), ("use_s2_act_attn", False), ("use_attn_renorm", True),
                       ("share_atom_edge_embedding", False), ("use_m_share_rad", False), ("use_pbc", False),
                       ("distance_function", "gaussian")):
        if flag in mc and mc[flag] != want:
            raise ValueError(f"EquiformerV2 checkpoint: {flag}={mc[flag]!r} is not supported (published: {want!r})")
    emb, heads_alpha = sd["sphere_embedding.weight"], sd["blocks.0.ga.alpha_dot"] if "blocks.0.ga.alpha_dot" in sd \
        else sd["force_block.alpha_dot"]
    lmax = int(sd["norm.affine_weight"].shape[0])
    heads, alpha_ch = (int(s) for s in heads_alpha.shape)
    hidden = int(sd["force_block.so2_conv_2.fc_m0.weight"].shape[1]) // (lmax + 1)
    offset = sd["distance_expansion.offset"]
    grid = sd["SO3_grid.0.0.to_grid_mat"].shape
    if grid[0] != grid[1]:
        raise ValueError(f"EquiformerV2 checkpoint: non-square S2 grid {tuple(grid[:2])} is not supported")
    cfg = dict(
        max_radius=float(mc.get("max_radius", round(float(offset[-1]), 6))),
        max_neighbors=32,  # HORM's forward calls radius_graph without it: torch_cluster's default 32
        max_num_elements=int(emb.shape[0]), sphere_channels=int(emb.shape[1]),
        num_layers=_count(sd, "blocks.", ".norm_1.affine_weight"),
        attn_hidden_channels=hidden, num_heads=heads, attn_alpha_channels=alpha_ch,
        attn_value_channels=int(sd["force_block.proj.weight"].shape[2]) // heads,
        ffn_hidden_channels=int(sd["energy_block.so3_linear_1.weight"].shape[1]),
        lmax=lmax, mmax=int(sd["mappingReduced.m_size"].shape[0]) - 1, grid_resolution=int(grid[0]),
        edge_channels=int(sd["edge_degree_embedding.rad_func.net.0.weight"].shape[0]),
        avg_degree=float(mc.get("avg_degree", AVG_DEGREE)),
    )
    if abs(float(offset[-1]) - cfg["max_radius"]) > 1e-4 * cfg["max_radius"]:
        raise ValueError(f"EquiformerV2 checkpoint: max_radius {cfg['max_radius']} but Gaussian offsets end at "
                         f"{float(offset[-1])}")
    return cfg


def _is_eqv2(sd) -> bool:
    return all(k in sd for k in ("SO3_grid.0.0.to_grid_mat", "force_block.proj.weight", "mappingReduced.to_m",
                                 "edge_degree_embedding.rad_func.net.0.weight", "norm.affine_weight"))


register_checkpoint_format(CheckpointFormat(
    model="horm-equiformer_v2",
    recognise=lambda hp, sd: _is_eqv2(sd) and "hessian_head.alpha_dot" not in sd,
    config=lambda hp, sd: {"name": "horm-equiformer_v2", **infer_backbone_config(hp, sd)},
    description="HORM EquiformerV2 (deepprinciple/HORM 8fc0be0), direct forces",
))

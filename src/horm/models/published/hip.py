"""HIP's EquiformerV2 with a direct Hessian head, ``hip-equiformer_v2`` (BurgerAndreas/hip df045d7).

The HORM EquiformerV2 trunk (:mod:`.equiformer_v2`, same quirks: detached edge frames,
random per-edge rolls, direct forces) plus HIP's head: ``num_layers_hessian`` more
transformer blocks on a second graph (all pairs within ``cutoff_hessian`` = 100 Å) and one
``SO2EquivariantGraphAttention`` whose per-edge messages (raw, without attention weights when
``hessian_no_attn_weights``) are projected to l ≤ 2 irreps, turned into 3×3 blocks with e3nn's
Wigner-3j (l = 0 ⊕ 1 ⊕ 2 → 1 ⊗ 1) and assembled with the node blocks into a symmetric Hessian:
H[a, b] += M_ab, H[b, a] += M_abᵀ per directed edge, H[a, a] += N_a + N_aᵀ.

``model(batch, compute_hessian=True)["hessian"]`` is the head's Hessian (HIP's
``hessian_pred``) by default, computed in the same forward pass; set ``hessian_from =
"autograd"`` (config field, or the attribute on a built model) to get instead minus the
Jacobian of the direct forces (what HORM's eval.py computes; with the frames detached, see
:mod:`.equiformer_v2`).

Quirks of the reference, reproduced:

- **Energy divisor.** ``avg_num_nodes`` is null in HIP's configuration, so the summed node
  energies are divided by Σ natoms / B *of the batch*: for one molecule E is the mean node
  energy, but in a batch every molecule's energy depends on the other molecules' sizes
  (forces and Hessians do not). Set ``avg_num_nodes`` to a number for a batch-independent
  scale (changes the energies, so off by default).
- The second graph's edge frames draw their own rolls (``replay_rolls(main, hessian)``).
- Parameters that cannot influence any output (the checkpoint holds them, we load them):
  ``edge_degree_embedding_hessian.*`` (built, never called) and, with raw messages,
  ``hessian_head.alpha_*`` and ``hessian_head.proj.*``.

What differs from the reference code: the flat-index assembly is computed on the fly from the
graph (no cached index tensors on the batch); messages are returned without the reference's
``return_raw_messages``/``return_attn_messages`` flags on the attention module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from e3nn import o3
from torch import nn

from horm.data.batch import Batch
from horm.models.registry import register_model
from horm.models.published import CheckpointFormat, register_checkpoint_format
from horm.models.published.eqv2_blocks import EdgeDegreeEmbedding, GaussianSmearing, Shared, segment_softmax
from horm.models.published.eqv2_blocks import smooth_leaky_relu
from horm.models.published.eqv2_so3 import SO3LinearV2, SO3Rotation
from horm.models.published.equiformer_v2 import (AVG_DEGREE, NUM_GAUSSIANS, PUBLISHED, SMALL, PublishedEquiformerV2,
                                                 PublishedEquiformerV2Config, _count, _is_eqv2,
                                                 infer_backbone_config)

HessianFrom = Literal["head", "autograd"]


@dataclass
class HIPEquiformerV2Config(PublishedEquiformerV2Config):
    max_radius: float = 5.0
    avg_num_nodes: float | None = None
    avg_degree_hessian: float = AVG_DEGREE
    num_layers_hessian: int = 1
    cutoff_hessian: float = 100.0
    hessian_no_attn_weights: bool = True
    attn_wo_sigmoid: bool = False
    hessian_from: HessianFrom = "head"


HIP_PUBLISHED = dict(PUBLISHED, max_radius=5.0)
HIP_SMALL = dict(SMALL, max_radius=5.0)


def irreps_to_cartesian(irreps: torch.Tensor) -> torch.Tensor:
    """(K, 9) coefficients of l = 0, 1, 2 → (K, 3, 3) matrices Σ_l C(1,1,l) · x_l (HIP's convention)."""
    out = 0
    for l, (lo, hi) in enumerate(((0, 1), (1, 4), (4, 9))):
        c = o3.wigner_3j(1, 1, l, dtype=irreps.dtype, device=irreps.device)
        out = out + torch.einsum("ijk, bk -> bij", c, irreps[..., lo:hi])
    return out


def assemble_hessian(batch: Batch, edge_index: torch.Tensor, edge_blocks: torch.Tensor,
                     node_blocks: torch.Tensor) -> torch.Tensor:
    """Flat per-molecule Hessians from (E, 3, 3) edge and (N, 3, 3) node blocks (HIP's index_add order)."""
    natoms = batch.natoms.long()
    n3 = natoms * 3
    offsets = batch.hess_ptr[:-1].long()
    flat = edge_blocks.new_zeros(int(batch.hess_ptr[-1]))
    c_i = torch.arange(3, device=flat.device).view(1, 3, 1)
    c_j = torch.arange(3, device=flat.device).view(1, 1, 3)
    if edge_index.shape[1]:
        mol = batch.batch[edge_index[0]]
        a = (edge_index[0] - batch.ptr[mol]).view(-1, 1, 1)
        b = (edge_index[1] - batch.ptr[mol]).view(-1, 1, 1)
        width, base = n3[mol].view(-1, 1, 1), offsets[mol].view(-1, 1, 1)
        idx_ab = ((a * 3 + c_i) * width + (b * 3 + c_j) + base).reshape(-1)
        idx_ba = ((b * 3 + c_i) * width + (a * 3 + c_j) + base).reshape(-1)
        flat = flat.index_add(0, idx_ab, edge_blocks.reshape(-1))
        flat = flat.index_add(0, idx_ba, edge_blocks.transpose(-2, -1).reshape(-1))
    a = (torch.arange(batch.num_atoms, device=flat.device) - batch.ptr[batch.batch]).view(-1, 1, 1)
    width, base = n3[batch.batch].view(-1, 1, 1), offsets[batch.batch].view(-1, 1, 1)
    diag = ((a * 3 + c_i) * width + (a * 3 + c_j) + base).reshape(-1)
    flat = flat.index_add(0, diag, node_blocks.reshape(-1))
    return flat.index_add(0, diag, node_blocks.transpose(-2, -1).reshape(-1))


@register_model("hip-equiformer_v2")
class HIPEquiformerV2(PublishedEquiformerV2):
    """HIP-EquiformerV2: direct forces and a direct Hessian head (see module docstring)."""

    config_cls = HIPEquiformerV2Config
    presets: ClassVar[dict[str, dict[str, Any]]] = {"published": HIP_PUBLISHED, "small": HIP_SMALL}

    def __init__(self, cfg: HIPEquiformerV2Config):
        super().__init__(cfg)
        if cfg.hessian_from not in ("head", "autograd"):
            raise ValueError(f"hessian_from {cfg.hessian_from!r}; valid: head, autograd")
        if cfg.cutoff_hessian <= 0 or cfg.num_layers_hessian < 0:
            raise ValueError("cutoff_hessian must be > 0 and num_layers_hessian >= 0")
        c = cfg
        self.hessian_from: HessianFrom = cfg.hessian_from
        self.SO3_rotation_hessian = nn.ModuleList([SO3Rotation(c.lmax)])
        self.distance_expansion_hessian = GaussianSmearing(0.0, c.cutoff_hessian, NUM_GAUSSIANS, 2.0)
        sh = Shared(self.SO3_rotation_hessian, self.mappingReduced, self.SO3_grid, c.lmax, c.mmax,
                    c.max_num_elements, [NUM_GAUSSIANS, c.edge_channels, c.edge_channels])
        self.edge_degree_embedding_hessian = EdgeDegreeEmbedding(sh, c.sphere_channels, c.avg_degree_hessian)
        self.hessian_layers = nn.ModuleList(self._block(sh) for _ in range(c.num_layers_hessian))
        self.hessian_head = self._attention(sh, 1)
        self.hessian_edge_message_proj = SO3LinearV2(c.num_heads * c.attn_value_channels, 1, lmax=2)
        self.hessian_node_proj = SO3LinearV2(c.sphere_channels, 1, lmax=2)
        if c.lmax < 2:
            raise ValueError("the Hessian head needs lmax >= 2")

    def _edge_messages(self, x: torch.Tensor, z: torch.Tensor, dist: torch.Tensor, edge_index: torch.Tensor):
        head = self.hessian_head
        msg, x_alpha = head.messages(x, z, dist, edge_index)
        if not self.cfg.hessian_no_attn_weights:
            a = smooth_leaky_relu(head.alpha_norm(x_alpha.reshape(-1, head.heads, head.alpha_ch)))
            alpha = torch.einsum("bik, ik -> bi", a, head.alpha_dot)
            if not self.cfg.attn_wo_sigmoid:
                alpha = segment_softmax(alpha, edge_index[1], x.shape[0])
            e, s = msg.shape[0], msg.shape[1]
            msg = (msg.reshape(e, s, head.heads, head.value_ch) * alpha.reshape(e, 1, head.heads, 1)).reshape(e, s, -1)
        return head.rotate_back(msg)

    def _head(self, batch: Batch, pos: torch.Tensor, t: dict[str, torch.Tensor]) -> torch.Tensor:
        """Flat per-molecule Hessians (eV/Å²) from the trunk's node features ``t`` (positions centred)."""
        edge_index, vec = self._graph(pos, batch.ptr, self.cfg.cutoff_hessian, None)
        self._set_frames(self.SO3_rotation_hessian, vec, "hessian")
        dist = self.distance_expansion_hessian(vec.norm(dim=-1))
        x, z = t["x"], t["z"]
        for blk in self.hessian_layers:
            x = blk(x, z, dist, edge_index)
        msg = self._edge_messages(x, z, dist, edge_index)
        edge = self.hessian_edge_message_proj(msg.narrow(1, 0, 9))[:, :, 0]
        node = self.hessian_node_proj(x.narrow(1, 0, 9))[:, :, 0]
        return assemble_hessian(batch, edge_index, irreps_to_cartesian(edge), irreps_to_cartesian(node))

    @property
    def hessian_mode(self) -> str:  # type: ignore[override]  # per instance: the head, or the forces' Jacobian
        return "direct" if self.hessian_from == "head" else "autograd"

    def _predict_hessian(self, batch: Batch, pos: torch.Tensor, pred: dict) -> torch.Tensor:
        """The head's flat per-molecule Hessians from the trunk of :meth:`_predict`."""
        return self._head(batch, pred["centred"], pred["trunk"])


def _hip_config(hparams, sd) -> dict[str, Any]:
    mc = dict((hparams or {}).get("model_config") or {})
    cfg = infer_backbone_config(hparams, sd)
    cfg.update(
        max_neighbors=int(mc.get("max_neighbors", 32)),  # HIP passes its config value to radius_graph
        avg_num_nodes=mc.get("avg_num_nodes"),
        avg_degree_hessian=float(mc.get("avg_degree_hessian", AVG_DEGREE)),
        num_layers_hessian=_count(sd, "hessian_layers.", ".norm_1.affine_weight"),
        cutoff_hessian=float(mc.get("cutoff_hessian", round(float(sd["distance_expansion_hessian.offset"][-1]), 6))),
        hessian_no_attn_weights=bool(mc.get("hessian_no_attn_weights", True)),
        attn_wo_sigmoid=bool(mc.get("attn_wo_sigmoid", False)),
    )
    return {"name": "hip-equiformer_v2", **cfg}


register_checkpoint_format(CheckpointFormat(
    model="hip-equiformer_v2",
    recognise=lambda hp, sd: _is_eqv2(sd) and "hessian_head.alpha_dot" in sd
    and "hessian_edge_message_proj.weight" in sd,
    config=_hip_config,
    description="HIP EquiformerV2 with the direct Hessian head (BurgerAndreas/hip df045d7)",
))

"""HORM's published LEFTNet (``horm-leftnet``, autograd forces) and LEFTNet-df (``horm-leftnet-df``).

What the reference computes (deepprinciple/HORM 8fc0be0: ``leftnet/potential.py`` ``Potential``
around ``leftnet/model/leftnet.py`` ``LEFTNet``, hard-coded in ``training_module.py`` with
cutoff 10 Å, 6 layers, 196 channels, 96 radial functions; eval.py calls ``forward_autograd``
for 'LEFTNet' and ``forward`` for 'LEFTNet-df'):

- inputs per atom: one-hot (H, C, N, O, F) and the atomic number as a float -> ``encoders.0``
  (6 -> 12 -> 7) plus one zero "condition" column = 8 features; positions centred per molecule;
- a graph fully connected inside each molecule; edges longer than ``cutoff`` get a zero mask
  on distance, directions and radial basis, see the quirks;
- ``model`` (:class:`~.leftnet_blocks.LEFTNetCore`): edge frames, local substructure encoding,
  ``num_layers`` × (position expansion, GCL edge update, equivariant message, frame update);
- energy = Σ_atoms ``readout`` (gated MLP H -> H -> H -> 1) of the final scalars, on HORM's ``ae``
  scale (the loader sets ``atom_ref``); ``horm-leftnet``: forces = −∂E/∂r;
  ``horm-leftnet-df``: forces = the vector head ``model.out_pos`` (a gated equivariant block),
  not a gradient, so its Hessian (−∂F/∂r, as eval.py) is not symmetric.

Quirks kept on purpose (they are what the checkpoints compute):

- EPS = 1e-6 is added to every norm *after* the square root (edge and node frames).
- Legacy node frame: b = mean position of the other atoms; in a fully connected centred molecule
  b = −a/(N−1), so a × b is rounding noise and the second/third axes are that noise divided by
  1e-6 (~1e-10 in float64, up to ~1e-2 in float32). Float32 outputs therefore match the
  reference only to that noise level (the fixture README's float32 tolerances).
- ``torch.cross`` without ``dim``: for a batch of exactly 3 atoms the node-frame cross products
  run across atoms, not xyz (:func:`~.leftnet_blocks.legacy_cross`).
- Edges beyond the cutoff are not dropped: distance and directions are zeroed, so they still
  carry radial_lin(0) with envelope 1 (a far pair looks like a pair at distance 0 without
  direction); energies jump when a pair crosses 10 Å. Atoms are grouped for the centroid of
  the frames by the reference's greedy ``assemble_nodemask`` over the cutoff edges.
- The GCL block returns LayerNorm(s) + update (the residual is on the normalised features).
- Unused checkpoint tensors are kept as modules so that the state dict loads strictly:
  ``model.embedding_out``, ``model.distance_embedding``, ``model.last_layer``, ``decoders.0``
  (and ``model.out_pos`` for ``horm-leftnet``).

What differs from the reference code:

- plain torch scatter sums (``index_add``) instead of torch_scatter/torch_geometric; summation
  order differs, float64 results agree to ~1e-14 relative (fixtures: tests/test_published_leftnet.py);
- ``horm-leftnet`` does not evaluate the vector head (it reaches no output);
- the one-zero condition column and the unused time draw (``torch.randint``) are not built;
- the reflection-equivariant |·| on frame coordinates is taken out of place (same values);
- elements other than H, C, N, O, F are rejected (the one-hot has no slot for them).
- square roots of exactly zero squared norms (a single atom, an atom at its group's centroid,
  diatomics and other linear molecules, where a × b = 0 or a − b = 0) get the zero subgradient
  (:func:`~.leftnet_blocks.safe_sqrt`); the reference's forces and Hessians are NaN there.
  Every value and derivative at a non-zero norm is unchanged, bit for bit. Note that near such
  geometries the EPS quirk still gives very large Hessians (~4e3 eV/Å² for CO2 with random weights).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from horm.data.batch import Batch
from horm.models.base import Potential
from horm.models.registry import register_model
from horm.models.graph import full_graph, scatter_mean, scatter_sum
from horm.models.published import CheckpointFormat, HParams, StateDict, register_checkpoint_format
from horm.models.published.leftnet_blocks import MLP, GatedMLP, LEFTNetCore

#: atomic numbers of the one-hot slots, in order (HORM's LMDB ``one_hot``)
ONE_HOT_Z = (1, 6, 7, 8, 9)
N_NODE_IN = len(ONE_HOT_Z) + 1  # one-hot + atomic number
N_EMBED = 8  # encoder output (7) + the zero condition column


@dataclass
class PublishedLEFTNetConfig:
    num_layers: int = 6
    hidden_channels: int = 196
    num_radial: int = 96
    cutoff: float = 10.0  # Å; not stored in the checkpoint (hard-coded in HORM's training_module)

    def __post_init__(self):
        if self.num_layers < 1 or self.hidden_channels < 4 or self.num_radial < 1 or not self.cutoff > 0:
            raise ValueError(f"invalid published LEFTNet size: {self}")


PRESETS = {
    "published": dict(num_layers=6, hidden_channels=196, num_radial=96, cutoff=10.0),
    "small": dict(num_layers=2, hidden_channels=16, num_radial=8, cutoff=10.0),  # the fixtures' size
}


def node_inputs(numbers: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(N, 6): one-hot over (H, C, N, O, F) and Z as a float, as HORM's LMDB ``one_hot``/``charges``."""
    table = torch.full((max(ONE_HOT_Z) + 1,), -1, dtype=torch.long, device=numbers.device)
    table[list(ONE_HOT_Z)] = torch.arange(len(ONE_HOT_Z), device=numbers.device)
    slot = table[numbers.clamp(0, max(ONE_HOT_Z))]
    bad = (slot < 0) | (numbers > max(ONE_HOT_Z))
    if bool(bad.any()):
        z = sorted({int(v) for v in numbers[bad].tolist()})
        raise ValueError(f"published LEFTNet: elements Z={z} not supported; valid Z: {list(ONE_HOT_Z)}")
    one_hot = torch.nn.functional.one_hot(slot, len(ONE_HOT_Z)).to(dtype)
    return torch.cat([one_hot, numbers.to(dtype).unsqueeze(1)], dim=1)


def _centre(pos: torch.Tensor, batch: Batch) -> torch.Tensor:
    return pos - scatter_mean(pos, batch.batch, batch.num_graphs)[batch.batch]


class _PublishedLEFTNet(Potential):
    """The network shared by both force modes; the state dict mirrors the checkpoint's ``potential.*``."""

    config_cls = PublishedLEFTNetConfig
    presets = PRESETS

    def __init__(self, cfg: PublishedLEFTNetConfig):
        super().__init__(cfg)
        h = cfg.hidden_channels
        self.model = LEFTNetCore(cfg.num_layers, h, cfg.num_radial, cfg.cutoff, n_in=N_EMBED)
        n = N_NODE_IN
        self.encoders = torch.nn.ModuleList([MLP(n, [2 * n, N_EMBED - 1], last_act=False)])
        self.decoders = torch.nn.ModuleList([MLP(N_EMBED - 1, [2 * n, n], last_act=False)])  # unused
        self.readout = GatedMLP(h, [h, h, 1])

    def _predict(self, batch: Batch, pos: torch.Tensor) -> dict[str, torch.Tensor]:
        # eval.py's compute_extra_props centres once, Potential.forward(_autograd) once more
        pos = _centre(_centre(pos, batch), batch)
        h = self.encoders[0](node_inputs(batch.numbers, pos.dtype))
        h = torch.cat([h, h.new_zeros(h.shape[0], 1)], dim=1)
        direct = self.forces_mode == "direct"
        s, dpos = self.model(h, pos, full_graph(batch.ptr.to(pos.device)), vector_head=direct)
        out = {"energy": scatter_sum(self.readout(s), batch.batch, batch.num_graphs).squeeze(-1)}
        if direct:
            out["forces"] = dpos
        return out


@register_model("horm-leftnet")
class PublishedLEFTNet(_PublishedLEFTNet):
    """HORM's LEFTNet: energy head, forces = −∂E/∂r (eval.py's ``forward_autograd``)."""

    forces_mode = "autograd"


@register_model("horm-leftnet-df")
class PublishedLEFTNetDF(_PublishedLEFTNet):
    """HORM's LEFTNet-df: energy head, forces from the equivariant vector head ``model.out_pos``."""

    forces_mode = "direct"


# --- checkpoint formats ----------------------------------------------------------------------
_LAYER = re.compile(r"^model\.gcl_layers\.(\d+)\.")
_MARKERS = ("model.gcl_layers.0.edge_mlp.mlp.0.linear.weight", "model.update_layers.0.lin3.4.weight",
            "model.out_pos.output_network.0.vec2_proj.weight", "readout.gmlp.mlp.2.linear.weight",
            "model.radial_emb.means")


def _saved_name(hparams: HParams) -> str | None:
    mc = (hparams or {}).get("model_config") if hasattr(hparams, "get") else None
    return mc.get("name") if hasattr(mc, "get") else None


def _is_leftnet(state_dict: StateDict) -> bool:
    return all(k in state_dict for k in _MARKERS)


def _recogniser(saved_name: str):
    def recognise(hparams: HParams, state_dict: StateDict) -> bool:
        name = _saved_name(hparams)
        if name is not None:  # the checkpoint says which of the two it is
            return name == saved_name and _is_leftnet(state_dict)
        return saved_name == "LEFTNet" and _is_leftnet(state_dict)  # no name: weights are the same

    return recognise


def _shape(state_dict: StateDict, key: str) -> tuple[int, ...]:
    return tuple(int(n) for n in state_dict[key].shape)


def _config_for(model: str):
    def config(hparams: HParams, state_dict: StateDict) -> dict:
        """Sizes from the state-dict shapes: HORM saves only the model name (see the manifests)."""
        hidden, n_in = _shape(state_dict, "model.embedding.weight")
        (num_radial,) = _shape(state_dict, "model.radial_emb.means")
        layers = {int(m.group(1)) for k in state_dict if (m := _LAYER.match(k))}
        num_layers = len(layers)
        if n_in != N_EMBED or layers != set(range(num_layers)):
            raise ValueError(f"LEFTNet checkpoint: model.embedding.weight has {n_in} inputs (expected "
                             f"{N_EMBED}) or gcl_layers indices {sorted(layers)} are not 0..n-1")
        return {"name": model, "num_layers": num_layers, "hidden_channels": hidden,
                "num_radial": num_radial, "cutoff": PRESETS["published"]["cutoff"]}

    return config


register_checkpoint_format(CheckpointFormat(
    model="horm-leftnet", recognise=_recogniser("LEFTNet"), config=_config_for("horm-leftnet"),
    description="HORM LEFTNet (autograd forces); hyper_parameters.model_config.name == 'LEFTNet'"))
register_checkpoint_format(CheckpointFormat(
    model="horm-leftnet-df", recognise=_recogniser("LEFTNet-df"), config=_config_for("horm-leftnet-df"),
    description="HORM LEFTNet-df (direct forces from model.out_pos); model_config.name == 'LEFTNet-df'"))

"""Published reactive MLIPs (HORM's LEFTNet, LEFTNet-df, AlphaNet, EquiformerV2; HIP-EquiformerV2),
written by us so that the released Lightning checkpoints load strictly and reproduce the reference
code's outputs (fixtures in ``../shared/reference/horm_models/``).

Each module in this package registers

- its :class:`~horm.models.base.Potential` under a name that says what it is (``horm-leftnet``,
  ``horm-leftnet-df``, ``horm-alphanet``, ``horm-equiformer_v2``, ``hip-equiformer_v2``), with a
  module structure whose ``state_dict`` keys are the checkpoint's ``potential.*`` keys minus the
  prefix (plus our own ``atom_ref`` buffer), and
- a :class:`CheckpointFormat`: how to recognise its Lightning checkpoint (saved hyper-parameters
  and keys) and how to rebuild the architecture's config from them (from the state-dict shapes
  where the checkpoint does not save the sizes).

The published networks predict HORM's ``ae`` (energy minus per-element atomic references); the
references are not in any checkpoint, so :data:`HORM_ATOM_REFS_EV` holds the least-squares fit of
``energy - ae`` over the HORM sample (as stated in the reference manifests) and the loader puts
them into ``atom_ref``, which makes ``energy`` a total ωB97X/6-31G(d) energy in eV.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch

#: eV per element, the fit of ``energy - ae`` over the HORM sample (reference manifests).
HORM_ATOM_REFS_EV: dict[int, float] = {1: -16.71317, 6: -1035.521, 7: -1489.14061, 8: -2046.24251}

HParams = Mapping[str, Any] | None
StateDict = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class CheckpointFormat:
    """How one published architecture's Lightning checkpoint is recognised and rebuilt.

    ``recognise(hparams, state_dict)``: True when this checkpoint is of this architecture
    (``hparams`` is the checkpoint's ``hyper_parameters`` or None; ``state_dict`` has the
    ``potential.`` prefix stripped). ``config(hparams, state_dict)``: the dict for
    :func:`horm.models.registry.build_model_from_config` (with ``name``) that rebuilds it.
    """

    model: str
    recognise: Callable[[HParams, StateDict], bool]
    config: Callable[[HParams, StateDict], dict[str, Any]]
    description: str = ""


FORMATS: list[CheckpointFormat] = []


def register_checkpoint_format(fmt: CheckpointFormat) -> CheckpointFormat:
    """Add a format; the loader tries formats in registration order."""
    if any(f.model == fmt.model for f in FORMATS):
        raise ValueError(f"checkpoint format for {fmt.model!r} is already registered")
    FORMATS.append(fmt)
    return fmt


def load_all() -> None:
    """Import every module of this package (each registers its model and format)."""
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")

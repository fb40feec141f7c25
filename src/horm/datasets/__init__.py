"""Datasets shipped inside the package.

``t1x_xtb``: a small reactive Hessian set at GFN2-xTB level, made by our own pipeline
(``horm sample`` + ``horm label``) from Transition1x validation reactions; see its README
for provenance, counts and the regeneration command. Splits: ``train``, ``val``
(in-distribution, split by reaction), ``ood`` (larger molecules, IRC points) and
``test_reactions/`` (reactant/product pairs for TS search, kept out of all three).

``t1x_xtb_large``: the larger xTB set that trains the shipped models (``horm.pretrained``),
NEB + TS/IRC points of ≥ 300 other reactions, splits ``train``/``val``/``test`` (held out,
labelled) and ``ts_reactions/`` (TS evaluation only). Only what fits in ~30 MB ships; the rest
is rebuilt by ``python -m horm.datasets.build_t1x_xtb_large --ship`` (see its README).
"""

from __future__ import annotations

from importlib.resources import as_file, files
from pathlib import Path
from typing import Literal

from horm.settings import check_choice

Bundled = Literal["t1x_xtb", "t1x_xtb_large"]
Split = Literal["train", "val", "ood", "test"]
_REBUILD = {"t1x_xtb": "python -m horm.datasets.build_t1x_xtb",
            "t1x_xtb_large": "python -m horm.datasets.build_t1x_xtb_large --ship"}
_TS_REACTIONS = {"t1x_xtb": "test_reactions", "t1x_xtb_large": "ts_reactions"}


def bundled_path(name: Bundled = "t1x_xtb") -> Path:
    """Directory of a bundled dataset (a real path; the package is installed unzipped)."""
    check_choice(name, Bundled, "bundled dataset")
    res = files("horm.datasets").joinpath(name)
    with as_file(res) as p:
        path = Path(p)
    if not path.is_dir():
        from horm.errors import DataError

        raise DataError(str(path), f"bundled dataset is missing from this installation (rebuild it: {_REBUILD[name]})")
    return path


def bundled_split_path(split: Split = "train", name: Bundled = "t1x_xtb") -> Path:
    check_choice(split, Split, "split")
    path = bundled_path(name) / f"{split}.hstore"
    if not path.is_file():
        from horm.errors import DataError

        raise DataError(str(path), f"split {split!r} of {name} is not in this installation "
                                   f"(rebuild it: {_REBUILD[name]})")
    return path


def load_bundled(split: Split = "train", name: Bundled = "t1x_xtb"):
    """The split as a read-only :class:`horm.data.store.HessianStore`."""
    from horm.data.store import HessianStore

    return HessianStore.open(bundled_split_path(split, name))


def bundled_test_reactions(name: Bundled = "t1x_xtb") -> list[Path]:
    """Reaction files (reactant, product frames) kept out of every split, for TS search."""
    return sorted((bundled_path(name) / _TS_REACTIONS[name]).glob("*.xyz"))

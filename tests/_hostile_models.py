"""Crafted model files for tests/test_model_file_hostile.py: each under 1 MB, each one class of attack.

Every maker writes one file into ``d`` and returns its path. ``SMALL_BOMBS`` lists the makers whose
files a careless reader would turn into gigabytes of memory; the test loads them all in one
fresh process and bounds its peak RSS.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import torch

from _lightning_ckpt import save_lightning_checkpoint


def tiny_model_file(d: Path, name: str = "model.pt") -> Path:
    """A valid model.pt of a tiny leftnet (the base that the attacks edit)."""
    from horm.models.registry import build_model
    from horm.models.files import save_model

    torch.manual_seed(0)
    model = build_model("leftnet", "tiny", hidden_channels=8, num_layers=1)
    model.set_atom_ref({1: -13.6, 6: -1030.0, 8: -2040.0})
    return save_model(model, Path(d) / name, meta={"level_of_theory": "GFN2-xTB (tblite)"})


def edit(path: Path, out: Path | None = None, **changes) -> Path:
    """Rewrite a model.pt with top-level keys changed (a value of ``...`` deletes the key)."""
    blob = torch.load(path, weights_only=True)
    for k, v in changes.items():
        if v is ...:
            blob.pop(k, None)
        else:
            blob[k] = v
    out = Path(out or path)
    torch.save(blob, out)
    return out


def wide_config(d: Path) -> Path:
    """A 3 KB model.pt whose config declares 40,000 channels and whose state dict is empty."""
    base = tiny_model_file(d, "wide_base.pt")
    cfg = torch.load(base, weights_only=True)["config"]
    return edit(base, Path(d) / "wide.pt", config={**cfg, "hidden_channels": 40_000}, state_dict={})


def stride0_model(d: Path) -> Path:
    """A model.pt whose one-element storage is viewed with stride 0 as 5·10⁸ elements."""
    base = tiny_model_file(d, "s0_base.pt")
    blob = torch.load(base, weights_only=True)
    state = dict(blob["state_dict"])
    state["z_emb.weight"] = torch.zeros(1).as_strided((500_000_000,), (0,))
    return edit(base, Path(d) / "stride0.pt", state_dict=state)


def stride0_checkpoint(d: Path) -> Path:
    """A released-layout Lightning checkpoint (``potential.*``) with a stride-0 giant tensor."""
    state = {"embedding.weight": torch.zeros(1).as_strided((500_000_000, 1), (0, 0))}
    return save_lightning_checkpoint(Path(d) / "stride0.ckpt", state, {"model_config": {"name": "leftnet"}})


def deflate_bomb(d: Path, unpacked_mb: int = 400) -> Path:
    """A valid model.pt re-zipped with one deflated entry that inflates to ``unpacked_mb`` MB."""
    base = tiny_model_file(d, "bomb_base.pt")
    out = Path(d) / "bomb.pt"
    chunk = bytes(1 << 20)
    with zipfile.ZipFile(base) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("/data/0"):  # the first storage: zeros, padded to the bomb size
                zi = zipfile.ZipInfo(info.filename)
                zi.compress_type = zipfile.ZIP_DEFLATED
                with dst.open(zi, "w", force_zip64=True) as f:
                    f.write(data)
                    for _ in range(unpacked_mb):
                        f.write(chunk)
                continue
            dst.writestr(info.filename, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    return out


SMALL_BOMBS = (wide_config, stride0_model, stride0_checkpoint, deflate_bomb)

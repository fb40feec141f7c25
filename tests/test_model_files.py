"""Model files carry a checked format version and metadata; `horm model info/list` print them."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from horm.errors import DataError


@pytest.fixture()
def model_file(tmp_path):
    from horm.models.registry import build_model
    from horm.models.files import save_model

    torch.manual_seed(0)
    model = build_model("leftnet", "tiny")
    model.set_atom_ref({1: -13.6, 6: -1030.0, 8: -2040.0})
    return save_model(model, tmp_path / "model.pt", meta={
        "level_of_theory": "GFN2-xTB (tblite)", "data": {"train": "train.hstore", "n_train": 12, "n_val": 3}})


def _rewrite(path, **changes):
    blob = torch.load(path, weights_only=True)
    blob.update(changes)
    torch.save(blob, path)


def test_a_newer_format_version_is_refused_naming_file_and_versions(model_file):
    from horm.models.files import VERSION, load_model

    _rewrite(model_file, version=99)
    with pytest.raises(DataError, match=rf"model\.pt: model file format version 99 is newer than this horm reads "
                                        rf"\(version {VERSION}\)"):
        load_model(model_file)
    from horm.calculators.potential import HormCalculator

    with pytest.raises(DataError, match="version 99"):
        HormCalculator.from_file(model_file)


@pytest.mark.parametrize("bad", ["2", 0, None])
def test_a_malformed_version_is_refused(model_file, bad):
    from horm.models.files import load_model

    _rewrite(model_file, version=bad)
    with pytest.raises(DataError, match="format version"):
        load_model(model_file)


def test_a_version_1_file_without_metadata_still_loads(model_file):
    from horm.models.files import load_model

    blob = torch.load(model_file, weights_only=True)
    del blob["meta"]
    blob["version"] = 1
    torch.save(blob, model_file)
    model, info = load_model(model_file)
    assert info["format_version"] == 1
    assert info["elements"] == [1, 6, 8]  # from the fitted references
    assert info["level_of_theory"] == "unknown"


def test_metadata_round_trip(model_file):
    import horm
    from horm.models.files import model_info

    info = model_info(model_file)
    assert info["format_version"] == 2
    assert info["horm_version"] == horm.__version__
    assert info["torch_version"] == str(torch.__version__)
    assert info["elements"] == [1, 6, 8]
    assert info["dtype"] == "float32"
    assert info["level_of_theory"] == "GFN2-xTB (tblite)"
    assert info["data"] == {"train": "train.hstore", "n_train": 12, "n_val": 3}


@pytest.mark.parametrize("dtype", ["float64", torch.float64, "float32", torch.float32])
def test_load_model_takes_dtype_as_string_or_torch_dtype(model_file, dtype):
    from horm.models.files import load_model

    model, _ = load_model(model_file, dtype=dtype)
    want = dtype if isinstance(dtype, torch.dtype) else getattr(torch, dtype)
    assert next(model.parameters()).dtype == want


def test_model_info_and_list_commands(model_file):
    from horm.cli import app

    res = CliRunner().invoke(app, ["model", "info", str(model_file)])
    assert res.exit_code == 0, res.output
    lines = {line[:24].strip(): line[25:].strip() for line in res.output.splitlines() if line.strip()}
    assert lines["elements"] == "H C O"
    assert lines["level of theory"] == "GFN2-xTB (tblite)"
    assert lines["format version"] == "2"
    assert "n_train=12" in lines["training data"]
    res = CliRunner().invoke(app, ["model", "list"])
    assert res.exit_code == 0
    names = [line.split()[0] for line in res.output.splitlines()]
    assert {"leftnet", "leftnet-df", "alphanet", "equiformer_v2", "hessian_head"} <= set(names)


def test_train_fills_the_metadata(tmp_path):
    """`horm train` records elements, level of theory and a data summary in model.pt."""
    from horm.datasets import bundled_split_path
    from horm.models.files import model_info
    from horm.train.config import TrainConfig
    from horm.train.run import train

    cfg = TrainConfig.from_yaml(None, [f"data.train={bundled_split_path('val')}", "data.max_train=8", "data.val_fraction=0",
                             "trainer.max_steps=1", "trainer.batch_size=4", "trainer.progress_bar=false",
                             f"out={tmp_path / 'run'}", "loss.hessian=0"])
    info = model_info(train(cfg))
    assert info["level_of_theory"].startswith("GFN2-xTB")
    assert set(info["elements"]) <= {1, 6, 7, 8} and 1 in info["elements"]
    assert info["data"]["n_train"] == 8 and info["data"]["train"].endswith("val.hstore")
    ckpt = model_info(tmp_path / "run" / "checkpoints" / "last.ckpt")  # a Lightning checkpoint: fewer fields
    assert ckpt["format_version"] == 0 and ckpt["elements"] == info["elements"]

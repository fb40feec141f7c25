"""Issue 28, "Options": every training option is checked when the config is built, before any
data is read, with its bounds in a one-line UsageError (exit 2); impossible machine requests
(devices) and binary config files are one line too. All checks here run at config build time.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass

import pytest
from typer.testing import CliRunner

from horm.errors import UsageError
from horm.settings import from_dict
from horm.train.config import (DataSection, LossSection, ModelSection, OptimSection, TrainConfig,
                               TrainerSection)

SECTIONS = (ModelSection, DataSection, LossSection, OptimSection, TrainerSection, TrainConfig)

# the nine cases of the issue, and the bounds each error must state
NINE = [("trainer.limit_val_batches=-1", "[1, inf)"), ("data.num_workers=-1", "[0, 256]"),
        ("data.max_train=0", "[1, inf)"), ("optim.weight_decay=-1", "[0, inf)"),
        ("optim.plateau_factor=5", "(0, 1)"), ("trainer.seed=-1", "[0, 4294967295]"),
        ("data.split_seed=-1", "[0, 4294967295]"), ("model.overrides.hidden_channels=wide", "integer"),
        ("model.overrides.num_layers=1.5", "integer")]


def _refused(*overrides: str) -> str:
    with pytest.raises(UsageError) as e:
        TrainConfig.from_yaml(None, list(overrides))
    msg = str(e.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("override, bounds", NINE)
def test_the_nine_impossible_options_are_refused_at_build_time_with_their_bounds(override, bounds):
    msg = _refused(override)
    assert override.split("=")[0] in msg and bounds in msg, msg


@pytest.mark.parametrize("override, bounds", [
    ("data.val_fraction=1", "[0, 1)"), ("data.ref_samples=0", "[1, inf)"), ("data.max_val=-1", "[0, inf)"),
    ("loss.n_hr=0", "[1, 30000]"), ("loss.n_hr=100000", "[1, 30000]"), ("loss.eigen_k=-2", "[0, 30000]"),
    ("loss.hessian_divisor=0", "(0, inf)"), ("loss.forces=-1", "[0, inf)"), ("optim.lr=0", "(0, 10]"),
    ("optim.min_lr_ratio=2", "[0, 1]"), ("optim.plateau_factor=0", "(0, 1)"), ("optim.plateau_patience=-1", "[0, inf)"),
    ("optim.ema_decay=1", "(0, 1)"), ("optim.warmup_steps=-5", "[0, inf)"), ("optim.grad_clip=-1", "[0, inf)"),
    ("trainer.batch_size=0", "[1, inf)"), ("trainer.devices=0", "[1, 1024]"), ("trainer.seed=4294967296", "[0, "),
    ("trainer.ckpt_every_n_steps=0", "[1, inf)"), ("trainer.val_every_n_steps=0", "[1, inf)"),
    ("trainer.log_every_n_steps=0", "[1, inf)"), ("trainer.max_epochs=-3", "[-1, inf)"),
])
def test_neighbours_out_of_range_are_refused_with_their_bounds(override, bounds):
    msg = _refused(override)
    assert override.split("=")[0] in msg and bounds in msg, msg


@pytest.mark.parametrize("override", ["data.val_fraction=0", "optim.plateau_factor=0.99", "trainer.seed=4294967295",
                                      "trainer.limit_val_batches=1", "data.max_val=0", "loss.n_hr=30000",
                                      "optim.grad_clip=null", "trainer.limit_val_batches=null", "data.num_workers=0"])
def test_values_at_the_edges_of_the_ranges_are_accepted(override):
    TrainConfig.from_yaml(None, [override])


def _numeric(tp) -> bool:
    args = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
    return any(a in (int, float) for a in args)


def test_every_numeric_field_states_a_range_and_its_default_lies_in_it():
    from horm.settings import field_range

    missing = []
    for cls in SECTIONS:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if _numeric(hints[f.name]) and field_range(cls, f.name) is None:
                missing.append(f"{cls.__name__}.{f.name}")
    assert not missing, missing
    TrainConfig().validate()  # the defaults are inside their own ranges


def test_a_value_assigned_directly_is_checked_by_validate():
    cfg = TrainConfig()
    cfg.trainer.seed = -1
    with pytest.raises(UsageError, match=r"trainer\.seed=-1 is not valid; valid: \[0, 4294967295\]"):
        cfg.validate()


def test_max_steps_zero_is_refused():
    assert "not 0" in _refused("trainer.max_steps=0", "trainer.max_epochs=3")


@pytest.mark.parametrize("override, words", [
    ("model.overrides.cutoff=nan", "finite"), ("model.overrides.cutoff=.inf", "finite"),
    ("model.overrides.hidden_channels=3", "LEFTNet"), ("model.overrides.graph=ring", "ring"),
    ("model.overrides.nope=1", "unknown setting"), ("model.overrides.reflection_invariant=maybe", "true, false"),
    ("model.preset=huge", "unknown preset"), ("model.name=nonet", "unknown model"),
])
def test_model_overrides_are_type_and_range_checked_at_build_time(override, words):
    assert words in _refused(override)


def test_a_backbone_override_of_a_hessian_head_is_checked_too():
    msg = _refused("model.name=hessian_head", "model.overrides.backbone_overrides={num_layers: two}")
    assert "backbone_overrides.num_layers" in msg


def test_valid_model_overrides_pass_and_fine_tuning_skips_the_model_section(tmp_path):
    TrainConfig.from_yaml(None, ["model.overrides.hidden_channels=16", "model.overrides.cutoff=4.5"])
    TrainConfig.from_yaml(None, ["model.overrides.nope=1", f"init_from={tmp_path / 'm.pt'}"])


def test_from_dict_checks_declared_ranges_of_any_settings_dataclass():
    from horm.settings import Range, ranged

    @dataclass
    class S:
        steps: int = ranged(10, "[1, 100]")
        tol: float = ranged(0.1, "(0, 1]")

    assert from_dict(S, {"steps": 100, "tol": 1}, "s") == S(100, 1.0)
    with pytest.raises(UsageError, match=r"s\.tol=0 is not valid; valid: \(0, 1\]"):
        from_dict(S, {"tol": 0}, "s")
    assert 0 not in Range("(0, 1]") and 1 in Range("(0, 1]") and 5 in Range("[1, inf)")
    with pytest.raises(ValueError):
        Range("0..1")


def test_more_devices_than_this_machine_has_is_an_error_not_a_hang():
    from horm.runtime import cpu_count
    from horm.train.run import check_devices

    with pytest.raises(UsageError, match=r"trainer\.devices=1000 .* valid: \[1, "):
        check_devices(TrainerSection(devices=1000, accelerator="cpu"))
    check_devices(TrainerSection(devices=cpu_count(), accelerator="cpu"))


def test_train_cli_refuses_devices_before_reading_data(tmp_path):
    from horm.cli import app

    res = CliRunner().invoke(app, ["train", "trainer.devices=1000", "trainer.accelerator=cpu", "--data",
                                   str(tmp_path / "absent.hstore"), "--out", str(tmp_path / "run")])
    assert res.exit_code == 2 and "trainer.devices=1000" in res.output and "Traceback" not in res.output


@pytest.mark.parametrize("content", [bytes(range(256)), b"a: 1\n\xff\xfe\x00\n"])
def test_a_binary_yaml_config_is_one_line_naming_the_file(tmp_path, content):
    from horm.cli import app

    p = tmp_path / "cfg.yaml"
    p.write_bytes(content)
    with pytest.raises(UsageError, match="cfg.yaml: not a YAML text file"):
        TrainConfig.from_yaml(p)
    res = CliRunner().invoke(app, ["train", str(p), "--data", "x", "--out", str(tmp_path / "run")])
    assert res.exit_code == 2 and "cfg.yaml" in res.output and "Traceback" not in res.output

"""Hostile model files: each is refused in one line, before it costs memory or loads a wrong model.

Classes (issue "Hardening, second round", model files and checkpoints): configs whose sizes the
weights do not have, tensors larger than their storage, archives that inflate, non-finite weights
and references, type confusion, shipped files that are not the shipped ones, refused pickles.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import _hostile_models as H
from horm.cli import app
from horm.errors import DataError

HERE = Path(__file__).resolve().parent


def _refused(path, *match, loader=None):
    from horm.models.files import load_model

    with pytest.raises(DataError) as exc:
        (loader or load_model)(path)
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg, msg
    for m in match:
        assert m in msg, msg
    return msg


@pytest.fixture()
def good(tmp_path):
    return H.tiny_model_file(tmp_path)


# --- sizes ----------------------------------------------------------------------------------------
def test_every_registered_architecture_builds_on_the_meta_device():
    """The rule that makes the shape check free: a model added later must keep it."""
    from horm.models.registry import model_class, build_model, list_models

    for name in list_models():
        for preset in model_class(name).presets:
            with torch.device("meta"):
                model = build_model(name, preset)
            params = list(model.parameters())  # constant buffers may be computed on the CPU
            assert params and all(v.is_meta for v in params), (name, preset)


def test_a_config_the_weights_do_not_have_is_refused_before_it_is_built(tmp_path, monkeypatch):
    from horm.models import base

    wide = H.wide_config(tmp_path)
    built = []
    real = base.Potential.__init__
    monkeypatch.setattr(base.Potential, "__init__", lambda self, cfg: (built.append(torch.empty(0).device), real(self, cfg))[1])
    _refused(wide, "weights do not match the architecture 'leftnet'", "missing key(s)")
    assert built == [torch.device("meta")]  # only the shape check ran, on meta


def test_a_wrong_shape_names_the_key(good):
    blob = torch.load(good, weights_only=True)
    state = dict(blob["state_dict"])
    state["z_emb.weight"] = torch.zeros(3, 3)
    H.edit(good, state_dict=state)
    _refused(good, "wrong shape(s): z_emb.weight [3, 3] vs model")


def test_a_lightning_checkpoint_of_ours_gets_the_same_check(tmp_path):
    """horm train's .ckpt: hyper-parameters declare the architecture; the same meta check applies."""
    from horm.models.files import load_model

    path = H.tiny_model_file(tmp_path)
    blob = torch.load(path, weights_only=True)
    ckpt = {"state_dict": {f"model.{k}": v for k, v in blob["state_dict"].items()},
            "hyper_parameters": {"model_config": {**blob["config"], "hidden_channels": 40_000}, "config": {}}}
    torch.save(ckpt, tmp_path / "run.ckpt")
    _refused(tmp_path / "run.ckpt", "weights do not match the architecture")
    ckpt["hyper_parameters"]["model_config"] = blob["config"]
    torch.save(ckpt, tmp_path / "run.ckpt")
    load_model(tmp_path / "run.ckpt")


def test_tensors_larger_than_their_storage_are_refused(tmp_path):
    from horm.models.files import model_info
    from horm.models.published.checkpoint import load_published_checkpoint

    for loader in (None, model_info):
        _refused(H.stride0_model(tmp_path), "z_emb.weight declares 500,000,000 elements", "storage of 4 bytes",
                 loader=loader)
    _refused(H.stride0_checkpoint(tmp_path), "potential.embedding.weight declares 500,000,000 elements",
             loader=load_published_checkpoint)
    res = CliRunner().invoke(app, ["model", "info", str(tmp_path / "stride0.ckpt")])
    assert res.exit_code == 1 and "Traceback" not in res.output and "storage" in res.output, res.output


def test_an_archive_that_inflates_is_refused_before_unpacking(tmp_path):
    from horm.models.files import import_checkpoint

    bomb = H.deflate_bomb(tmp_path, unpacked_mb=40)
    _refused(bomb, "declares", "unpacked from", "refused before unpacking")
    _refused(bomb, "refused before unpacking", loader=lambda p: import_checkpoint(p, tmp_path / "out.pt"))


def test_non_regular_and_legacy_files_are_refused(tmp_path, good):
    fifo = tmp_path / "fifo.pt"
    os.mkfifo(fifo)
    _refused(fifo, "not a regular file")  # would block forever in open() otherwise
    (tmp_path / "zero.pt").symlink_to("/dev/zero")
    _refused(tmp_path / "zero.pt", "not a regular file")
    blob = torch.load(good, weights_only=True)
    torch.save(blob, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    _refused(tmp_path / "legacy.pt", "not a torch zip archive")
    data = good.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    _refused(tmp_path / "cut.pt", "truncated or damaged zip archive")


def test_peak_memory_stays_bounded_for_every_small_crafted_file(tmp_path):
    """All crafted files (each < 1 MB) through every reader in one fresh process: peak RSS < 500 MB.

    Before: 2.9 GB (40,000 channels), 3.6 GB (stride 0), ~1 GB (deflate)."""
    files = [str(maker(tmp_path)) for maker in H.SMALL_BOMBS]
    assert all(os.path.getsize(f) < 1 << 20 for f in files)
    script = textwrap.dedent(f"""
        from horm.errors import DataError
        from horm.models.files import load_model, model_info
        from horm.models.published.checkpoint import load_published_checkpoint
        refused = 0
        for f in {files!r}:
            for loader in (load_model, model_info, load_published_checkpoint):
                try:
                    loader(f)
                except DataError:
                    refused += 1
        # VmHWM: this process's own peak (ru_maxrss would carry pytest's size across fork + exec)
        hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")][0]
        print(refused, int(hwm.split()[1]) // 1024)
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    refused, rss_mb = map(int, out.stdout.split())
    assert refused == 3 * len(files)
    assert rss_mb < 500, f"peak RSS {rss_mb} MB"


# --- values -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_and_references_name_the_key(good, value):
    blob = torch.load(good, weights_only=True)
    state = dict(blob["state_dict"])
    state["nb_emb.weight"] = state["nb_emb.weight"].clone()
    state["nb_emb.weight"].view(-1)[3] = value
    H.edit(good, state_dict=state)
    _refused(good, "non-finite values in nb_emb.weight")
    state = dict(blob["state_dict"])
    state["atom_ref"] = state["atom_ref"].clone()
    state["atom_ref"][6] = value
    H.edit(good, state_dict=state)
    _refused(good, "non-finite values in atom_ref")
    H.edit(good, state_dict=blob["state_dict"], atom_ref={1: -13.6, 6: value})
    _refused(good, "atom_ref[6]", "not a finite energy")


def test_a_nan_cutoff_is_refused_not_a_graph_without_edges(good):
    cfg = torch.load(good, weights_only=True)["config"]
    H.edit(good, config={**cfg, "cutoff": float("nan")})
    _refused(good, "model config is not usable", "model.cutoff=nan", "finite")


@pytest.mark.parametrize("change, match", [
    ({"config": ...}, "model config is a NoneType"),
    ({"config": "leftnet"}, "model config is a str"),
    ({"config": ["leftnet"]}, "model config is a list"),
    ({"config": {"name": 5}}, "no architecture name"),
    ({"config": {"name": "nonsense"}}, "unknown model 'nonsense'"),
    ({"state_dict": [1, 2]}, "state_dict is a list"),
    ({"state_dict": {"w": "abc"}}, "not named tensors: w"),
    ({"atom_ref": "HCNO"}, "atom_ref is a str"),
    ({"atom_ref": {999: -1.0}}, "atom_ref key 999"),
    ({"train_config": "x"}, "train_config is a str"),
    ({"meta": {"elements": "HCNO"}}, "meta.elements 'HCNO'"),
    ({"meta": {"elements": [1, 6, 999]}}, "meta.elements [1, 6, 999]"),
    ({"version": True}, "format version True"),
])
def test_type_confusion_is_one_line(good, change, match):
    from horm.models.files import model_info

    H.edit(good, **change)
    _refused(good, match)
    if "config" not in change or change["config"] is ... or not isinstance(change["config"], dict):
        _refused(good, match, loader=model_info)


def test_cli_verbs_refuse_a_bad_file_in_one_line_with_exit_1(good, tmp_path):
    cfg = torch.load(good, weights_only=True)["config"]
    H.edit(good, config={**cfg, "hidden_channels": "wide"})
    from horm.datasets import bundled_split_path, bundled_test_reactions

    for args in (["model", "info", str(good)],
                 ["evaluate", str(good), "--data", str(bundled_split_path("val")), "--out", str(tmp_path / "ev")],
                 ["ts", "run", str(bundled_test_reactions()[0]), "--potential", str(good), "--out", str(tmp_path / "ts")]):
        res = CliRunner().invoke(app, args)
        text = " ".join(res.output.split())
        assert res.exit_code == 1 and "Traceback" not in text, res.output
        assert "model.hidden_channels='wide' is not valid; expected an integer" in text, res.output


# --- pickles and the shipped files ------------------------------------------------------------------
class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_a_refused_pickle_names_the_global_without_torch_advice(good, tmp_path):
    torch.save({"format": "horm-model", "version": 2, "x": _Evil()}, tmp_path / "evil.pt")
    msg = _refused(tmp_path / "evil.pt", "refused global posix.system")
    assert "\x1b" not in msg and "weights_only" not in msg and "succeed" not in msg.lower()
    torch.save({"format": "horm-model", "obj": torch.nn.Linear(2, 2)}, tmp_path / "module.pt")
    _refused(tmp_path / "module.pt", "refused global torch.nn.modules.linear.Linear")


def test_a_swapped_shipped_file_is_refused_under_its_name(tmp_path, monkeypatch):
    import horm.pretrained as pre
    from horm.models.files import load_model

    d = tmp_path / "pretrained"
    d.mkdir()
    shutil.copy(pre.HERE / "manifest.json", d / "manifest.json")
    monkeypatch.setenv(pre.ENV, str(d))
    name = "t1x-xtb-leftnet-efh"
    run = tmp_path / "run"
    run.mkdir()
    H.tiny_model_file(run)
    dst = pre.install(name, run)
    load_model(name)  # the installed file matches its manifest entry
    other = H.tiny_model_file(tmp_path, "other.pt")
    blob = torch.load(other, weights_only=True)
    blob["atom_ref"] = {1: -13.0, 6: -1030.0, 8: -2040.0}
    torch.save(blob, dst)  # a swapped file under the shipped name
    man = json.loads((d / "manifest.json").read_text())
    man["models"][name]["bytes"] = dst.stat().st_size  # same size: only the hash can tell
    (d / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(DataError, match="has sha256 .* the manifest says .* changed or swapped"):
        load_model(name)
    man["models"][name]["bytes"] = 12
    (d / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(DataError, match="the manifest says 12: the file was changed or swapped"):
        load_model(name)


def test_the_installed_shipped_models_match_their_manifest():
    import horm.pretrained as pre

    for name in pre.available():
        pre.model_path(name)  # size and sha256 checked


def test_save_model_writes_through_a_fresh_temporary_file(tmp_path):
    """A planted ``model.pt.tmp`` link (the old fixed temporary name) is neither followed nor left."""
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    (tmp_path / "model.pt.tmp").symlink_to(victim)
    H.tiny_model_file(tmp_path)
    assert victim.read_text() == "keep"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp") and not p.is_symlink()] == []


def test_a_device_as_training_config_is_one_usage_line(tmp_path):
    from horm.errors import UsageError
    from horm.train.config import TrainConfig

    (tmp_path / "cfg.yaml").symlink_to("/dev/zero")
    with pytest.raises(UsageError, match="cfg.yaml: .*not a regular file"):
        TrainConfig.from_yaml(tmp_path / "cfg.yaml")

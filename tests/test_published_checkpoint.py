"""Loading HORM's/HIP's Lightning checkpoints: safe (allow-list), strict (keys, shapes), recognised.

Two parts:

- the loader's safety and strictness on a stand-in architecture (``horm``'s own ``leftnet``
  with a format registered only for these tests), so they run whichever published models
  have landed;
- per published architecture (skipped while its model is not registered, or when
  ``../shared/reference`` is absent): a checkpoint assembled in the Lightning layout from the
  fixture's small weights, with ``hyper_parameters`` shaped as the real ones are saved, loads
  with :func:`load_published_checkpoint` and reproduces the reference energy (plus the atom
  references) and forces in float32.
"""

from __future__ import annotations

import builtins
import json
import os
import sys

import numpy as np
import pytest
import torch

from _lightning_ckpt import save_lightning_checkpoint
from conftest import SHARED
from horm.data.batch import collate
from horm.data.sample import Sample
from horm.errors import DataError, UnsafePickleError
from horm.models.registry import build_model, list_models
from horm.models.published import FORMATS, HORM_ATOM_REFS_EV, CheckpointFormat
from horm.models.files import import_checkpoint
from horm.models.published.checkpoint import (
    LEVEL_OF_THEORY, is_lightning_checkpoint, load_published_checkpoint, provenance, sha256_file,
)

REF = SHARED / "reference" / "horm_models"
STANDIN = "horm-own-leftnet (test stand-in)"


# --- a stand-in architecture ------------------------------------------------------------------
@pytest.fixture
def standin():
    """horm's own leftnet (tiny) as a 'published' format: recognised by model_config.name."""
    fmt = CheckpointFormat(
        model="leftnet",
        recognise=lambda hp, sd: (hp or {}).get("model_config", {}).get("name") == STANDIN,
        config=lambda hp, sd: {k: v for k, v in hp["model_config"].items() if k != "name"} | {"name": "leftnet"})
    list_models()  # the published formats register first, as in use
    FORMATS.append(fmt)
    torch.manual_seed(0)
    model = build_model("leftnet", "tiny").double().eval()
    hp = {"model_config": {**model.config, "name": STANDIN}, "optimizer_config": {"lr": 5e-4}}
    state = {k: v.float() for k, v in model.state_dict().items() if k != "atom_ref"}
    yield model, state, hp
    FORMATS.remove(fmt)


def _mol():
    return Sample(numbers=np.array([8, 6, 1, 1, 7, 1]),
                  pos=np.array([[0, 0, 0], [1.2, 0, 0], [1.8, 0.9, 0], [1.8, -0.9, 0.1], [-1.1, 0.6, 0.3],
                                [-1.9, 0.1, 0.2]], float))


def _predict(model, sample, dtype=torch.float64):
    return model(collate([sample], dtype=dtype), create_graph=False)


def test_standin_checkpoint_loads_strictly_with_horm_references(standin, tmp_path):
    model, state, hp = standin
    path = save_lightning_checkpoint(tmp_path / "x.ckpt", state, hp)
    loaded, info = load_published_checkpoint(path, dtype=torch.float64)
    mol = _mol()
    ref_sum = sum(HORM_ATOM_REFS_EV[int(z)] for z in mol.numbers)
    a, b = _predict(model, mol), _predict(loaded, mol)
    # weights were stored in float32: the float64 model sees the same float32-rounded values
    model.load_state_dict({**{k: v.double() for k, v in state.items()}, "atom_ref": model.atom_ref})
    a = _predict(model, mol)
    assert float(b["energy"] - a["energy"]) == pytest.approx(ref_sum, abs=1e-9)
    torch.testing.assert_close(b["forces"], a["forces"], rtol=0, atol=1e-12)
    assert not loaded.training and next(loaded.parameters()).dtype == torch.float64
    assert info["architecture"] == "leftnet" and info["level_of_theory"] == LEVEL_OF_THEORY
    assert info["source_sha256"] == sha256_file(path) and info["path"] == str(path)
    assert info["elements"] == [1, 6, 7, 8] and info["atom_ref"] == HORM_ATOM_REFS_EV
    assert info["config"]["name"] == "leftnet"


def test_user_atom_references_by_symbol_or_number(standin, tmp_path):
    _, state, hp = standin
    path = save_lightning_checkpoint(tmp_path / "x.ckpt", state, hp)
    base, _ = load_published_checkpoint(path, dtype=torch.float64)
    user = {"H": -13.6, "c": -1030.0, 7: -1480.0, "8": -2040.0, "F": -2700.0}
    mine, info = load_published_checkpoint(path, dtype=torch.float64, atom_refs=user)
    mol = _mol()
    by_z = {1: -13.6, 6: -1030.0, 7: -1480.0, 8: -2040.0}
    shift = sum(by_z[int(z)] - HORM_ATOM_REFS_EV[int(z)] for z in mol.numbers)
    assert float(_predict(mine, mol)["energy"] - _predict(base, mol)["energy"]) == pytest.approx(shift, abs=1e-9)
    assert info["elements"] == [1, 6, 7, 8, 9] and info["atom_ref_source"] == "user"
    for bad in ({"Xx": 1.0}, {"H": float("nan")}, {0: 1.0}, {"H": "a lot"}):
        with pytest.raises(ValueError, match="atom reference"):
            load_published_checkpoint(path, atom_refs=bad)


def _one_line_data_error(path, match):
    with pytest.raises(DataError) as exc:
        load_published_checkpoint(path)
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg, msg
    for m in match:
        assert m in msg, msg
    return msg


@pytest.mark.parametrize("how", ["missing", "unexpected", "shape", "integer"])
def test_strict_loading_names_the_offending_keys(standin, tmp_path, how):
    _, state, hp = standin
    state = dict(state)
    key = sorted(k for k, v in state.items() if v.ndim == 2)[-1]
    if how == "missing":
        del state[key]
        expect = ["1 missing key(s)", f"potential.{key}"]
    elif how == "unexpected":
        state["extra_head.weight"] = torch.zeros(3)
        expect = ["1 unexpected key(s)", "potential.extra_head.weight"]
    elif how == "shape":
        state[key] = torch.cat([state[key], state[key][:1]])
        expect = ["1 wrong shape(s)", f"potential.{key}"]
    else:
        state[key] = state[key].long()
        expect = ["integer/float mismatch", f"potential.{key}"]
    _one_line_data_error(save_lightning_checkpoint(tmp_path / "x.ckpt", state, hp), expect)


def test_keys_outside_the_potential_and_non_finite_weights_are_refused(standin, tmp_path):
    _, state, hp = standin
    path = tmp_path / "x.ckpt"
    blob = {"state_dict": {"potential." + k: v for k, v in state.items()} | {"ema.shadow": torch.zeros(1)},
            "hyper_parameters": hp}
    torch.save(blob, path)
    _one_line_data_error(path, ["outside 'potential.'", "ema.shadow"])
    key = sorted(state)[0]
    bad = dict(state)
    bad[key] = bad[key].clone()
    bad[key].view(-1)[0] = float("inf")
    _one_line_data_error(save_lightning_checkpoint(path, bad, hp), ["non-finite", f"potential.{key}"])


def test_truncated_or_foreign_files_give_one_line(standin, tmp_path):
    _, state, hp = standin
    data = save_lightning_checkpoint(tmp_path / "x.ckpt", state, hp).read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(data[: len(data) // 2])
    _one_line_data_error(tmp_path / "cut.ckpt", ["cannot read checkpoint"])
    torch.save([torch.zeros(2)], tmp_path / "list.ckpt")
    _one_line_data_error(tmp_path / "list.ckpt", ["not a Lightning checkpoint"])
    _one_line_data_error(tmp_path / "absent.ckpt", ["no such checkpoint file"])


def test_unrecognised_checkpoint_says_what_it_looks_like(standin, tmp_path):
    _, state, hp = standin
    path = save_lightning_checkpoint(tmp_path / "x.ckpt", state, {"model_config": {"name": "SchNet"}})
    _one_line_data_error(path, ["not a checkpoint of a known published model", "'SchNet'", f"{len(state)} weights"])
    path = save_lightning_checkpoint(tmp_path / "y.ckpt", {"w": torch.zeros(2)}, None)
    _one_line_data_error(path, ["no model_config.name", "1 weights (w)"])


# --- safety -------------------------------------------------------------------------------------
class _System:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _Exec(_System):
    def __reduce__(self):
        return builtins.exec, (f"open({str(self.marker)!r}, 'w').close()",)


class _TrainingCode(_System):  # stands for a class of the training code (e.g. PotentialModule)
    def __reduce__(self):
        return _TrainingCode, (self.marker,), {"state": 1}

    def __setstate__(self, state):
        open(self.marker, "w").close()


@pytest.mark.parametrize("payload", [_System, _Exec, _TrainingCode])
def test_unsafe_pickle_is_refused_and_nothing_runs(tmp_path, payload):
    marker, control = tmp_path / "pwned", tmp_path / "control"
    path = save_lightning_checkpoint(tmp_path / "evil.ckpt", {"w": torch.zeros(2)}, {"model_config": payload(marker)})
    torch.save({"x": payload(control)}, tmp_path / "control.ckpt")
    torch.load(tmp_path / "control.ckpt", weights_only=False)  # a plain load WOULD run it
    assert control.exists()
    with pytest.raises(UnsafePickleError) as exc:
        load_published_checkpoint(path)
    msg = str(exc.value)
    assert msg.startswith(str(path)) and "refused global" in msg and "\n" not in msg
    assert {_System: "system", _Exec: "builtins.exec", _TrainingCode: "_TrainingCode"}[payload] in msg
    assert not marker.exists()
    assert not is_lightning_checkpoint(tmp_path / "control.ckpt") and not marker.exists()


def test_torchscript_archive_is_refused_not_run(tmp_path):
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), tmp_path / "scripted.ckpt")
    with pytest.raises(UnsafePickleError, match="TorchScript"):
        load_published_checkpoint(tmp_path / "scripted.ckpt")


def test_hip_omegaconf_hyper_parameters_are_read_without_omegaconf(standin, tmp_path, monkeypatch):
    omegaconf = pytest.importorskip("omegaconf")
    _, state, hp = standin
    cfg = omegaconf.OmegaConf.create({"model": hp["model_config"],
                                      "optimizer": {"lr": 5e-4, "betas": [0.9, 0.999]},
                                      "training": {"lmax_list": [4], "avg_num_nodes": None, "eigen_loss": {"a": 1}}})
    omegaconf.OmegaConf.set_struct(cfg, True)
    hip_hp = {"model_config": cfg.model, "optimizer_config": dict(cfg.optimizer), "training_config": dict(cfg.training)}
    path = save_lightning_checkpoint(tmp_path / "hip.ckpt", state, hip_hp)
    for mod in [m for m in sys.modules if m == "omegaconf" or m.startswith("omegaconf.")]:
        monkeypatch.setitem(sys.modules, mod, None)  # importing omegaconf now fails
    from horm.models.published.checkpoint import read_published_checkpoint

    got, _ = read_published_checkpoint(path)
    assert got["model_config"] == hp["model_config"]
    assert got["optimizer_config"] == {"lr": 5e-4, "betas": [0.9, 0.999]}
    assert got["training_config"] == {"lmax_list": [4], "avg_num_nodes": None, "eigen_loss": {"a": 1}}
    model, info = load_published_checkpoint(path)
    assert info["architecture"] == "leftnet"


def test_is_lightning_checkpoint_is_a_cheap_layout_check(standin, tmp_path):
    model, state, hp = standin
    path = save_lightning_checkpoint(tmp_path / "x.ckpt", state, hp)
    assert is_lightning_checkpoint(path)
    torch.save({"state_dict": {"model." + k: v for k, v in state.items()}, "hyper_parameters": hp}, tmp_path / "own.ckpt")
    (tmp_path / "notes.txt").write_text("potential. state_dict")
    for p in (tmp_path / "own.ckpt", tmp_path / "notes.txt", tmp_path, tmp_path / "absent.ckpt"):
        assert not is_lightning_checkpoint(p)


def test_import_writes_a_safe_model_file_that_load_model_reads_back(standin, tmp_path):
    from horm.models.files import load_model, model_info

    _, state, hp = standin
    path = save_lightning_checkpoint(tmp_path / "x.ckpt", state, hp)
    out, info = import_checkpoint(path, tmp_path / "model.pt")
    model, info2 = load_model(out)
    meta = provenance(info2)
    assert meta["source_sha256"] == sha256_file(path) and meta["architecture"] == "leftnet"
    assert info2["level_of_theory"] == LEVEL_OF_THEORY and info2["elements"] == [1, 6, 7, 8]
    assert model_info(out)["level_of_theory"] == LEVEL_OF_THEORY
    assert info2["atom_ref"] == pytest.approx(HORM_ATOM_REFS_EV)
    direct, _ = load_published_checkpoint(path)
    a, b = _predict(direct, _mol(), torch.float32), _predict(model, _mol(), torch.float32)
    torch.testing.assert_close(a["energy"], b["energy"], rtol=0, atol=0)
    torch.testing.assert_close(a["forces"], b["forces"], rtol=0, atol=0)


# --- the published architectures ----------------------------------------------------------------
# float32-vs-float64 tolerances relative to max|reference|: the "float32 reimplementation" rows of
# each fixture README (energy, forces); the EquiformerV2 rolls (not replayed here) move forces by
# < 2e-7 relative.
ARCHS = {
    "LEFTNet": ("horm-leftnet", 2e-4, 9e-2),
    "LEFTNet-df": ("horm-leftnet-df", 3e-4, 4e-2),
    "AlphaNet": ("horm-alphanet", 9e-6, 2e-5),
    "EquiformerV2": ("horm-equiformer_v2", 1e-6, 1e-5),
    "HIP-EquiformerV2": ("hip-equiformer_v2", 2e-6, 4e-5),
}


def _saved_hparams(folder: str, manifest: dict, small: dict):
    """hyper_parameters as the real checkpoint saves them, at the fixture's small size."""
    saved = manifest["hyper_parameters_as_saved"]
    if folder in ("LEFTNet", "LEFTNet-df"):
        return saved  # only the name matters; its sizes are train.py's AlphaNet ones (wrong for LEFTNet)
    if folder == "AlphaNet":
        return {**saved, "model_config": small["model_config"]}
    if folder == "EquiformerV2":
        return {**saved, "model_config": small["model"]}  # equiformer_v2.yml's dict: no name
    # HIP: save_hyperparameters() of PotentialModule(cfg.model, dict(cfg.optimizer), dict(cfg.training))
    try:
        from omegaconf import OmegaConf
    except ImportError:
        OmegaConf = None
    cfg = {"model": small["model"], "optimizer": {"optimizer": "muon", "lr": 5e-4, "betas": [0.9, 0.999]},
           "training": {"hessian_loss_weight": 1.0, "bz": 64, "eigen_loss": {"alpha": 0.0}}}
    if OmegaConf is None:
        return {"model_config": cfg["model"], "optimizer_config": cfg["optimizer"], "training_config": cfg["training"]}
    c = OmegaConf.create(cfg)
    return {"model_config": c.model, "optimizer_config": dict(c.optimizer), "training_config": dict(c.training)}


def _published(folder: str):
    name = ARCHS[folder][0]
    d = REF / folder
    if not d.is_dir():
        pytest.skip(f"fixtures not found at {d} (../shared/reference is provided in CI)")
    if name not in list_models():
        pytest.skip(f"{name} is not registered yet (its architecture has not landed)")
    from safetensors.numpy import load_file

    manifest = json.loads((d / "manifest_full.json").read_text())
    small = json.loads((d / "small" / "config.json").read_text())
    weights = {k[len("potential."):]: torch.from_numpy(v.copy()) for k, v in load_file(d / "small" / "weights.safetensors").items()}
    ref = np.load(d / "small" / "reference.npz", allow_pickle=False)
    return name, manifest, small, weights, ref


@pytest.mark.parametrize("folder", list(ARCHS))
def test_published_checkpoint_reproduces_the_reference(folder, tmp_path):
    name, manifest, small, weights, ref = _published(folder)
    path = save_lightning_checkpoint(tmp_path / f"{folder}.ckpt", weights, _saved_hparams(folder, manifest, small))
    model, info = load_published_checkpoint(path)
    assert info["architecture"] == name and info["config"]["name"] == name
    z, pos = ref["mol0_z"], ref["mol0_pos"]
    out = model(collate([Sample(numbers=z, pos=pos.astype(np.float64))], dtype=torch.float32), create_graph=False)
    e_ref = float(ref["mol0_f64_A_energy"]) + sum(HORM_ATOM_REFS_EV[int(a)] for a in z)
    _, tol_e, tol_f = ARCHS[folder]
    # float32 total energy: its own rounding (|E| ~ 1e3-1e4 eV) on top of the fixture tolerance
    assert abs(float(out["energy"][0]) - e_ref) <= tol_e * abs(float(ref["mol0_f64_A_energy"])) + 4e-7 * abs(e_ref)
    f_ref = ref["mol0_f64_A_forces"]
    assert np.abs(out["forces"].double().numpy() - f_ref).max() <= tol_f * np.abs(f_ref).max()


@pytest.mark.parametrize("folder", list(ARCHS))
def test_published_checkpoint_with_a_missing_or_extra_key_is_refused(folder, tmp_path):
    _name, manifest, small, weights, _ref = _published(folder)
    hp = _saved_hparams(folder, manifest, small)
    dead = [k[len("potential."):] for k in manifest["dead_parameters_at_small_config"] if "<i>" not in k]
    key = dead[-1] if dead else sorted(weights)[-1]
    dropped = {k: v for k, v in weights.items() if k != key}
    _one_line_data_error(save_lightning_checkpoint(tmp_path / "a.ckpt", dropped, hp), [key])
    extra = weights | {"not_in_the_architecture.weight": torch.zeros(4)}
    _one_line_data_error(save_lightning_checkpoint(tmp_path / "b.ckpt", extra, hp), ["not_in_the_architecture.weight"])


@pytest.mark.parametrize("folder", ["LEFTNet", "AlphaNet", "HIP-EquiformerV2"])
def test_loaded_checkpoint_evaluates_the_horm_sample_like_the_reference(folder, tmp_path, horm_sample_path):
    """Checkpoint -> horm.evaluate on the HORM sample: sample 2 is the fixture's mol1 (12 atoms)."""
    from horm.data.horm_lmdb import HormLmdb
    from horm.evaluate.metrics import evaluate_model

    name, manifest, small, weights, ref = _published(folder)
    assert int(ref["mol1_lmdb_index"]) == 2
    path = save_lightning_checkpoint(tmp_path / "m.ckpt", weights, _saved_hparams(folder, manifest, small))
    model, _ = load_published_checkpoint(path)
    with HormLmdb(horm_sample_path) as ds:
        metrics, pr = evaluate_model(model, ds, batch_size=1, max_samples=3)
    assert np.isfinite(metrics["hessian_mae"]).all() and np.isfinite(metrics["energy_mae"]).all()
    _, tol_e, tol_f = ARCHS[folder]
    e_ref, f_ref, h_ref = (ref[f"mol1_f64_A_{o}"] for o in ("energy", "forces", "hessian"))
    assert abs(pr.energy[2] - pr.ref_offset[2] - float(e_ref)) <= tol_e * abs(float(e_ref)) + 4e-7 * abs(pr.energy[2])
    assert np.abs(pr.forces[2] - f_ref).max() <= tol_f * np.abs(f_ref).max()
    tol_h = {"LEFTNet": 1e-2, "AlphaNet": 4e-4, "HIP-EquiformerV2": 4e-4}[folder]  # fixture READMEs, float32
    hess = pr.hessian[2]
    if folder == "HIP-EquiformerV2":  # evaluation takes HIP's Hessian from its head
        h_ref = ref["mol1_f64_A_hessian_pred"]
    assert np.abs(hess - h_ref).max() <= tol_h * np.abs(h_ref).max()

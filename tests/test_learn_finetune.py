"""Fine-tuning a committee model: warm start from the model (its architecture, not the config's),
and a run killed after its first checkpoint resumes from that checkpoint, not from the warm start."""

from __future__ import annotations

import json

import torch

from horm.datasets import bundled_split_path
from horm.learn.finetune import finetune_models
from horm.models.files import load_model
from horm.train.config import TrainConfig
from horm.train.run import train

# an architecture unlike the config default: a resumed run built from the config would not load
TINY = ["model.name=leftnet", "model.preset=tiny", "model.overrides.hidden_channels=8", "model.overrides.num_layers=1",
        "trainer.progress_bar=false", "trainer.batch_size=4", "data.val_fraction=0", "trainer.precision=float64"]


def test_a_killed_fine_tune_resumes_from_its_checkpoint_with_the_warm_start_architecture(tmp_path):
    store = str(bundled_split_path("val"))
    train(TrainConfig.from_yaml(None, TINY + [f"data.train={store}", "trainer.max_steps=2", f"out={tmp_path / 'a'}"]))
    warm = tmp_path / "a" / "model.pt"
    over = ["trainer.batch_size=4", "trainer.precision=float64"]
    (new,) = finetune_models([str(warm)], store, tmp_path / "r1", 1, steps=4, overrides=over)
    d = tmp_path / "r1" / "finetune" / "m0"
    first = json.loads((d / "run.json").read_text())
    assert first["global_step"] == 4 and first["resumed_from"] is None
    done = load_model(new, dtype=torch.float64)[0].state_dict()
    # a kill after the last checkpoint, before model.pt was written
    (d / "model.pt").unlink()
    (d / "run.json").unlink()
    (again,) = finetune_models([str(warm)], store, tmp_path / "r1", 1, steps=4, overrides=over)
    info = json.loads((d / "run.json").read_text())
    assert info["resumed_from"] is not None and info["resumed_from"].endswith(".ckpt")
    assert info["global_step"] == 4 and info["model"]["hidden_channels"] == 8
    model, meta = load_model(again, dtype=torch.float64)
    assert meta["config"]["hidden_channels"] == 8
    for k, v in model.state_dict().items():  # the checkpoint's weights, no step retrained
        torch.testing.assert_close(v, done[k], rtol=0, atol=0)


def test_the_store_can_be_labelled_into_after_a_fine_tune_in_the_same_process(tmp_path):
    """``horm learn`` fine-tunes on its store and labels into it next round, in one process: the
    training run must not keep the store open read-only (LMDB opens a file once per process)."""
    from horm.data.store import HessianStore

    store = tmp_path / "store.hstore"
    with HessianStore.open(bundled_split_path("val")) as src, \
            HessianStore.create(store, src.meta["level_of_theory"]) as dst:
        for i in range(4):
            dst.append(src[i])
    train(TrainConfig.from_yaml(None, TINY + [f"data.train={store}", "trainer.max_steps=1", f"out={tmp_path / 'a'}"]))
    finetune_models([str(tmp_path / "a" / "model.pt")], str(store), tmp_path / "r1", 1, steps=1,
                    overrides=["trainer.batch_size=4", "trainer.precision=float64"])
    with HessianStore.open(bundled_split_path("val")) as src, HessianStore.open(store, readonly=False) as dst:
        dst.append(src[4])
    with HessianStore.open(store) as st:
        assert len(st) == 5

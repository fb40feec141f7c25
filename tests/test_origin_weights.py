"""Drawing training samples by sampler stage (``data.origin_weights``): the weights each sample
gets, the draw frequencies they cause, bad settings as one line, and ``horm train`` with them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from horm.cli import app
from horm.data.batch import SampleDataset
from horm.data.sample import Sample
from horm.datasets import bundled_split_path
from horm.errors import DataError, UsageError
from horm.train.config import TrainConfig
from horm.train.data import make_loader, origin_weights

ORIGINS = ["reactant", "neb:iter4:img2", "neb:final:img3", "ts", "tsopt:last", "irc:forward:2", "irc:reverse:5", ""]


def _ds(origins=ORIGINS):
    return SampleDataset([Sample(numbers=np.array([1, 1]), pos=np.array([[0.0, 0, 0], [0, 0, 0.7 + 0.01 * i]]),
                                 energy=-1.0 - i, forces=np.zeros((2, 3)), origin=o, key=f"k{i}")
                          for i, o in enumerate(origins)])


def test_each_sample_gets_its_longest_matching_prefix():
    w = origin_weights(_ds(), {"irc": 2, "irc:reverse": 5, "ts": 10, "neb:final:": 0})
    assert w.tolist() == [1, 1, 0, 10, 1, 2, 5, 1]  # tsopt is not ts; '' and reactant are unmatched
    assert origin_weights(_ds(), {}) is None


def test_all_zero_weights_are_one_line():
    with pytest.raises(DataError, match="weight 0") as e:
        origin_weights(_ds(["ts", "ts"]), {"ts": 0})
    assert "\n" not in str(e.value)


def test_draws_follow_the_weights_and_skip_weight_zero():
    ds = _ds(["a", "b", "c"])
    w = origin_weights(ds, {"a": 0, "c": 9})
    loader = make_loader(ds, 1, torch.float64, shuffle=True, seed=3, weights=w)
    assert len(list(loader)) == 3  # one epoch: len(ds) draws
    counts = {"k0": 0, "k1": 0, "k2": 0}
    for _ in range(400):  # each pass over the batch sampler is the next epoch's draws
        for batch in loader.batch_sampler:
            for i in batch:
                counts[f"k{i}"] += 1
    assert counts["k0"] == 0
    assert 7.0 < counts["k2"] / counts["k1"] < 11.5  # 9 expected; 1,200 draws
    again = make_loader(ds, 1, torch.float64, shuffle=True, seed=3, weights=w)
    assert list(again.batch_sampler) == list(make_loader(ds, 1, torch.float64, shuffle=True, seed=3,
                                                         weights=w).batch_sampler)


@pytest.mark.parametrize("bad", ["data.origin_weights.ts=-1", "data.origin_weights.ts=inf",
                                 "data.origin_weights.ts=many", "data.origin_weights.ts=true"])
def test_bad_weights_are_usage_errors(bad):
    with pytest.raises(UsageError, match="origin_weights"):
        TrainConfig.from_yaml(None, [bad])


def test_weights_survive_the_saved_config(tmp_path):
    cfg = TrainConfig.from_yaml(None, ["data.origin_weights.ts=10", "data.origin_weights.irc=2"])
    cfg.save(tmp_path / "c.yaml")
    assert TrainConfig.from_yaml(tmp_path / "c.yaml").data.origin_weights == {"ts": 10, "irc": 2}


def test_horm_train_reports_the_draw_shares(tmp_path):
    data = bundled_split_path("val", "t1x_xtb_large")
    res = CliRunner().invoke(app, ["train", "--data", str(data), "--out", str(tmp_path / "run"), "model.preset=tiny",
                                   "model.overrides.hidden_channels=8", "model.overrides.num_layers=1",
                                   "trainer.max_steps=2", "data.val_fraction=0", "loss.hessian=0",
                                   "trainer.progress_bar=false", "data.origin_weights.ts=10"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "origin weights {'ts': 10}: weight 10:" in text and "% of draws" in text
    assert (tmp_path / "run" / "model.pt").is_file()


def test_every_ddp_rank_draws_with_the_weights(monkeypatch):
    """Only rank 0 prints; every rank must get the same weights (a rank with None would draw uniformly)."""
    from lightning.pytorch.utilities import rank_zero_only

    from horm.train.data import TrainData
    from horm.train.run import _draw_weights

    cfg = TrainConfig.from_yaml(None, ["data.origin_weights.ts=10"])
    data = TrainData(train=_ds(), val=None, atom_ref={})
    printed = []
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    w1 = _draw_weights(cfg, data, _Console(printed))
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    w0 = _draw_weights(cfg, data, _Console(printed))
    assert w1 is not None and w1.tolist() == w0.tolist() == [1, 1, 1, 10, 1, 1, 1, 1]
    assert len(printed) == 1


class _Console:
    def __init__(self, sink):
        self.sink = sink

    def print(self, msg, **_):
        self.sink.append(msg)

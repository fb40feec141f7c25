"""Resume continues the same run: a run stopped and resumed ends with the weights of an unbroken one.

Bundled xTB store (no ../shared needed), tiny LEFTNet, E-F loss (no stochastic Hessian rows),
10 molecules in batches of 4: 3 batches an epoch, so the break at step 2 falls mid-epoch and the
resumed run crosses two epoch boundaries. Equal weights need the same batches in the same order
(the sampler's place is in the checkpoint), the optimiser and the schedule restored; a resume that
restarted its epoch, or reshuffled it, would train on other batches and end elsewhere. The
schedule is constant after a 3-step warmup (a cosine's curve depends on max_steps, so a 2-step run
has another one; its closed form is tested below).
"""

from __future__ import annotations

import json

import pytest

from horm.datasets import bundled_split_path
from horm.models.files import load_model
from horm.train.config import TrainConfig
from horm.train.module import param_fingerprint
from horm.train.run import train

OVER = ["model.name=leftnet", "model.preset=tiny", "model.overrides.hidden_channels=16",
        "model.overrides.num_layers=1", "trainer.progress_bar=false", "data.max_train=10", "data.val_fraction=0",
        "trainer.batch_size=4", "loss.hessian=0", "optim.lr=1e-2", "optim.schedule=constant",
        "optim.warmup_steps=3", "trainer.ckpt_every_n_steps=100"]


def _train(out, steps: int, *extra: str) -> str:
    cfg = TrainConfig.from_yaml(None, OVER + [f"data.train={bundled_split_path('train')}", f"out={out}",
                                              f"trainer.max_steps={steps}", *extra])
    train(cfg)
    return param_fingerprint(load_model(out)[0])[0]


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> str:
    """The weights of an unbroken 7-step run."""
    return _train(tmp_path_factory.mktemp("whole") / "run", 7)


def test_stop_and_resume_ends_with_the_weights_of_an_unbroken_run(tmp_path, whole):
    first = _train(tmp_path / "broken", 2)
    resumed = _train(tmp_path / "broken", 7, "resume=true")
    info = json.loads((tmp_path / "broken" / "run.json").read_text())
    assert info["global_step"] == 7 and info["resumed_from"].endswith("last.ckpt")
    assert first != whole  # non-trivial: two steps are not seven
    assert resumed == whole


def test_resume_with_another_seed_would_differ(tmp_path, whole):
    """The guard of the test above: the same break and resume, but the resumed run draws its
    batches from another seed, ends with other weights, so equality above is not an accident."""
    _train(tmp_path / "broken", 2)
    reseeded = _train(tmp_path / "broken", 7, "resume=true", "trainer.seed=1")
    assert reseeded != whole


def test_ddp_shares_of_an_epoch_are_disjoint_and_cover_the_training_data():
    """Each rank's share of an epoch, as training plans it (HormModule.setup shards the sampler):
    disjoint apart from the padding that evens the step counts, and together every sample."""
    import numpy as np
    import torch

    from horm.train.data import load_train_data, make_loader

    cfg = TrainConfig.from_yaml(None, [f"data.train={bundled_split_path('train')}", "data.val_fraction=0"])
    data = load_train_data(cfg.data)
    try:
        for epoch in (0, 1):
            shares = []
            for rank in range(3):
                s = make_loader(data.train, 7, torch.float32, shuffle=True, natoms=data.train_natoms,
                                max_atoms=60).batch_sampler
                s.shard(3, rank)
                shares.append(s.plan(epoch))
            assert len({len(p) for p in shares}) == 1  # every rank runs the same number of steps
            flat = np.concatenate([b for p in shares for b in p])
            assert set(flat.tolist()) == set(range(len(data.train)))
            pad = len(flat) - len(data.train)
            assert 0 <= pad <= 2 * 7  # at most world − 1 repeated batches
            assert len(np.unique(flat)) == len(data.train)
    finally:
        data.close()


@pytest.mark.slow
def test_ddp_resume_continues_each_rank_where_it_stopped(tmp_path):
    """Two CPU processes (gloo): stopped at step 2 and resumed to 5, the ranks end with the weights
    of an unbroken 5-step DDP run."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("PYTEST_CURRENT_TEST", None)

    def run(out, steps, *extra):
        args = [sys.executable, "-m", "horm.cli", "train", "--data", str(bundled_split_path("train")), "--out",
                str(out), *OVER, "data.max_train=16", "trainer.batch_size=2", f"trainer.max_steps={steps}",
                "trainer.devices=2", "trainer.strategy=ddp", "trainer.accelerator=cpu", *extra]
        res = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
        ranks = [json.loads((out / "ddp_sync" / f"rank{r}.json").read_text()) for r in (0, 1)]
        assert ranks[0]["sha256"] == ranks[1]["sha256"] and ranks[0]["global_step"] == steps
        return ranks[0]["sha256"]

    whole = run(tmp_path / "whole", 5)
    first = run(tmp_path / "broken", 2)
    assert run(tmp_path / "broken", 5, "resume=true") == whole != first


def test_the_cosine_schedule_is_a_function_of_the_step_and_the_budget():
    """HORM's cosine schedule in closed form: warmup from 1e-3, 1 at the end of it, the floor at
    max_steps and flat after; a longer budget is the same curve stretched, never a second cycle."""
    import math

    import torch

    from horm.train.module import cosine_factor

    f = lambda s, total=100: cosine_factor(s, total=total, warmup=10, floor=0.01)  # noqa: E731
    assert f(0) == pytest.approx(1e-3) and f(10) == pytest.approx(1.0) and f(100) == pytest.approx(0.01)
    assert f(55) == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(150) == f(100)  # flat after the budget (a restored CosineAnnealingLR climbs back)
    assert all(f(s) >= f(s + 1) for s in range(10, 120))
    # what torch's own warmup + cosine give for one uninterrupted run
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    lin = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1e-3, total_iters=10)
    cos = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=90, eta_min=0.01)
    seq = torch.optim.lr_scheduler.SequentialLR(opt, [lin, cos], milestones=[10])
    for s in range(100):
        assert opt.param_groups[0]["lr"] == pytest.approx(f(s), rel=1e-6, abs=1e-9), s
        opt.step()
        seq.step()


@pytest.mark.parametrize("warmup", [0, 10])
def test_an_older_cosine_scheduler_state_resumes_at_its_step(warmup):
    """A checkpoint from before the closed-form schedule holds a SequentialLR (or, without warmup, a
    CosineAnnealingLR) state; it is rewritten so the LambdaLR loads it and goes on from its step."""
    import functools

    import torch

    from horm.train.module import cosine_factor, upgrade_cosine_state

    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.5)
    cos = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=100 - warmup, eta_min=0.005)
    old = cos if not warmup else torch.optim.lr_scheduler.SequentialLR(
        opt, [torch.optim.lr_scheduler.LinearLR(opt, start_factor=1e-3, total_iters=warmup), cos], [warmup])
    for _ in range(37):
        opt.step()
        old.step()
    states = [old.state_dict()]
    upgrade_cosine_state(states)
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    new = torch.optim.lr_scheduler.LambdaLR(opt2, functools.partial(cosine_factor, total=100, warmup=warmup,
                                                                    floor=0.01))
    new.load_state_dict(states[0])
    assert new.last_epoch == 37 and new.base_lrs == [0.5]
    opt2.step()
    new.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.5 * cosine_factor(38, total=100, warmup=warmup, floor=0.01))

"""The trainer end to end: `horm train` on the real HORM sample, resume after SIGKILL, DDP sync.

Each run uses the tiny LEFTNet, a handful of molecules and a few steps. Subprocess runs set
OMP_NUM_THREADS=1 (two cores are shared).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from horm.cli import app
from horm.train.config import TrainConfig
from horm.models.files import load_model

REPO = Path(__file__).resolve().parents[1]

TINY = ["model.name=leftnet", "model.preset=tiny", "model.overrides.hidden_channels=16", "model.overrides.num_layers=1",
        "trainer.progress_bar=false", "trainer.log_every_n_steps=1"]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


def _metrics(run: Path) -> list[dict]:
    rows = []
    for f in sorted((run / "logs").glob("version_*/metrics.csv")):
        with open(f) as fh:
            rows += list(csv.DictReader(fh))
    return rows


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_horm_train_on_horm_sample_reduces_loss(horm_sample_path, tmp_path):
    before = _sha(horm_sample_path)
    out = tmp_path / "run"
    config = REPO / "configs" / "leftnet_efh.yaml"  # the shipped example, overridden below
    # train and validate on the same 4 molecules (validation rows are seeded, so comparable)
    res = CliRunner().invoke(app, ["train", str(config), "--data", str(horm_sample_path), "--val",
                                   str(horm_sample_path), "--out", str(out), "trainer.progress_bar=false",
                                   "trainer.log_every_n_steps=1", "trainer.max_steps=20", "trainer.batch_size=4",
                                   "data.max_train=4", "data.max_val=4", "optim.lr=3e-3", "optim.schedule=constant",
                                   "optim.warmup_steps=0", "optim.ema_decay=0.5", "loss.n_hr=4",
                                   "trainer.ckpt_every_n_steps=10", "trainer.val_every_n_steps=5"])
    assert res.exit_code == 0, res.output
    assert _sha(horm_sample_path) == before  # read unchanged
    rows = _metrics(out)
    train = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    val = [float(r["val/loss"]) for r in rows if r.get("val/loss")]
    assert len(train) == 20 and len(val) == 4
    assert sum(train[-3:]) / 3 < 0.8 * sum(train[:3]) / 3, train  # the E-F-H loss falls
    assert val[-1] < val[0], val
    assert all(r.get("val/hessian_rows") for r in rows if r.get("val/loss"))  # autograd on in validation
    for name in ("config.yaml", "model.pt", "run.json", "checkpoints/last.ckpt", "checkpoints/best.ckpt"):
        assert (out / name).is_file(), name
    saved = TrainConfig.from_yaml(out / "config.yaml")
    assert saved.optim.ema_decay == 0.5 and saved.loss.n_hr == 4 and saved.trainer.max_steps == 20
    model, info = load_model(out)
    assert set(info["atom_ref"]) == {1, 6, 7, 8}  # H C N O fitted on the training split
    from horm.data.horm_lmdb import HormLmdb
    from horm.data.refs import fit_atom_references

    with HormLmdb(horm_sample_path) as ds:
        first = [ds[i] for i in range(4)]
    want = fit_atom_references([s.numbers for s in first], [s.energy for s in first])
    assert info["atom_ref"] == pytest.approx(want, abs=1e-3)  # fitted on exactly the training split
    # model.pt and last.ckpt's state_dict hold the EMA weights; the raw ones differ from them
    ema, _ = load_model(out / "checkpoints" / "last.ckpt")
    for (k, a), (_, b) in zip(model.state_dict().items(), ema.state_dict().items()):
        torch.testing.assert_close(a, b, msg=k)
    raw = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["current_model_state"]
    w = "model.energy_head.1.2.weight" if "model.energy_head.1.2.weight" in raw else next(
        k for k in raw if k.startswith("model.") and k.endswith("weight"))
    assert not torch.allclose(raw[w], ema.state_dict()[w[len("model."):]])
    # an existing run is never overwritten silently; bad values are one-line errors
    res = CliRunner().invoke(app, ["train", "--data", str(horm_sample_path), "--out", str(out), *TINY])
    assert res.exit_code == 2 and "resume=true" in res.output
    res = CliRunner().invoke(app, ["train", "--data", str(horm_sample_path), "--out", str(tmp_path / "x"),
                                   "trainer.strategy=fsdp"])
    assert res.exit_code == 2 and "valid: auto, ddp, ddp_spawn" in res.output


def _ckpt_step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


@pytest.mark.slow
def test_resume_after_sigkill_mid_epoch(horm_sample_path, tmp_path):
    out = tmp_path / "run"
    # 6 molecules, batch 4: 2 steps per epoch; checkpoints every 3 steps land mid-epoch
    args = [sys.executable, "-m", "horm.cli", "train", "--data", str(horm_sample_path), "--out", str(out), *TINY,
            "data.max_train=6", "data.val_fraction=0", "trainer.batch_size=4", "trainer.ckpt_every_n_steps=3",
            "trainer.max_steps=100000"]
    proc = subprocess.Popen(args, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            steps = sorted(int(p.stem[4:]) for p in (out / "checkpoints").glob("step*.ckpt")) \
                if (out / "checkpoints").is_dir() else []
            if steps and steps[-1] >= 6:
                break
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.2)
        else:
            pytest.fail("no checkpoint within 120 s")
        time.sleep(0.5)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "model.pt").exists()  # it really died mid-run
    from horm.train.run import find_resume_checkpoint

    ck = find_resume_checkpoint(out)
    k = _ckpt_step(ck)
    assert k >= 6 and k % 3 == 0
    target = k + 4
    res = subprocess.run(args[:-1] + [f"trainer.max_steps={target}", "resume=true"], env=_env(),
                         capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    info = json.loads((out / "run.json").read_text())
    assert info["global_step"] == target and info["resumed_from"] == str(ck)
    logs = sorted((out / "logs").glob("version_*/metrics.csv"))
    with open(logs[-1]) as fh:
        resumed_steps = [int(r["step"]) for r in csv.DictReader(fh) if r.get("train/loss")]
    assert min(resumed_steps) == k and max(resumed_steps) == target - 1  # continued, not restarted
    assert _ckpt_step(out / "checkpoints" / "last.ckpt") == target


@pytest.mark.slow
def test_ddp_two_cpu_processes_keep_parameters_in_sync(horm_sample_path, tmp_path):
    out = tmp_path / "ddp"
    args = [sys.executable, "-m", "horm.cli", "train", "--data", str(horm_sample_path), "--out", str(out), *TINY,
            "data.max_train=8", "data.val_fraction=0", "trainer.batch_size=2", "trainer.max_steps=3",
            "trainer.devices=2", "trainer.strategy=ddp", "trainer.accelerator=cpu", "optim.lr=1e-2"]
    res = subprocess.run(args, env=_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    ranks = [json.loads((out / "ddp_sync" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2] and [r["global_step"] for r in ranks] == [3, 3]
    # each rank saw different molecules; only gradient all-reduce keeps the weights identical
    assert ranks[0]["sha256"] == ranks[1]["sha256"], ranks
    model, _ = load_model(out)
    from horm.train.module import param_fingerprint

    assert param_fingerprint(model)[0] == ranks[0]["sha256"]


def test_max_time_budget_stops_training_and_is_summed_over_resumes(horm_sample_path, tmp_path):
    from horm.train.run import train

    out = tmp_path / "run"
    over = TINY + ["data.max_train=4", "data.val_fraction=0", "trainer.batch_size=2", "trainer.max_steps=100000",
                   "trainer.ckpt_every_n_steps=5", "trainer.max_time=00:00:00:04", "loss.hessian=0"]
    cfg = TrainConfig.from_yaml(None, over + [f"data.train={horm_sample_path}", f"out={out}"])
    t0 = time.perf_counter()
    train(cfg)
    first = json.loads((out / "run.json").read_text())["global_step"]
    assert 0 < first < 100000 and time.perf_counter() - t0 < 60  # stopped by the clock, not by max_steps
    train(TrainConfig.from_yaml(None, over + [f"data.train={horm_sample_path}", f"out={out}", "resume=true"]))
    again = json.loads((out / "run.json").read_text())["global_step"]
    assert first <= again <= first + 1  # the 4 s budget was spent in the first session
    with pytest.raises(ValueError, match="DD:HH:MM:SS"):
        TrainConfig.from_yaml(None, ["trainer.max_time=2h"])

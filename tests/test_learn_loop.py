"""`horm learn` end to end: one round on 2 reactions with two tiny models and xTB, killed with
SIGKILL while it labels and resumed; then one round with the DFT engine on a 3-atom reaction."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sella")
pytest.importorskip("tblite")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REACTIONS = SHARED / "data" / "t1x_val_reactions"
POOL = ("rxn2587", "rxn1929")  # 5 and 6 atoms
HELDOUT = "rxn4440"  # 5 atoms, never labelled
FAST = "path: {method: none, n_images: 5}\ntsopt: {max_steps: 5}\nirc: {max_steps: 10, opt_max_steps: 30}\n"
BUDGET, MIN_RMSD = 8, 0.02


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Two tiny LEFTNets (seeds 0 and 1) trained 5 steps on a 16-sample seed store of the bundled xTB set."""
    if not REACTIONS.exists():
        pytest.skip(f"shared reaction set not found at {REACTIONS}")
    from horm.data.store import HessianStore
    from horm.datasets import bundled_split_path
    from horm.train.config import TrainConfig
    from horm.train.run import train

    d = tmp_path_factory.mktemp("learn")
    for sub, names in (("pool", POOL), ("held", (HELDOUT,))):
        (d / sub).mkdir()
        for n in names:
            shutil.copy(REACTIONS / f"{n}.xyz", d / sub)
    with HessianStore.open(bundled_split_path("train")) as src, \
            HessianStore.create(d / "seed.hstore", src.meta["level_of_theory"], **src.meta["provenance"]) as st:
        st.extend([src[i] for i in range(0, len(src), len(src) // 16)][:16])
    for seed in (0, 1):
        train(TrainConfig.from_yaml(None, [
            "model.name=leftnet", "model.preset=tiny", "model.overrides.hidden_channels=16",
            "model.overrides.num_layers=1", "trainer.progress_bar=false", f"data.train={d / 'seed.hstore'}",
            "data.val_fraction=0", "trainer.max_steps=5", "trainer.batch_size=4", "trainer.precision=float64",
            f"out={d / f'm{seed}'}", f"trainer.seed={seed}"]))
    (d / "fast.yaml").write_text(FAST)
    return d


def _count(store: Path) -> int:
    from horm.data.store import HessianStore

    try:
        with HessianStore.open(store) as st:
            return len(st)
    except Exception:  # noqa: BLE001 - not created yet, or being created
        return -1


def _stage(out: Path) -> tuple[int, str] | None:
    try:
        st = json.loads((out / "state.json").read_text())
        return st["round"], st["stage"]
    except (OSError, ValueError, KeyError):
        return None


def test_one_round_labels_the_budget_never_a_stored_geometry_and_resumes_after_sigkill(setup, tmp_path):
    from horm.data.store import HessianStore
    from horm.data.xyz import read_xyz
    from horm.datasets import bundled_split_path
    from horm.learn.selection import store_index

    d, out = setup, tmp_path / "out"
    cmd = [sys.executable, "-m", "horm.cli", "learn", str(d / "pool"), "--engine", "xtb", "--models", str(d / "m0"),
           str(d / "m1"), "--out", str(out), "--rounds", "1", "--budget", str(BUDGET), "--min-rmsd", str(MIN_RMSD),
           "--seed-store", str(d / "seed.hstore"), "--heldout-reactions", str(d / "held"),
           "--heldout-store", str(bundled_split_path("val")), "--eval-max-samples", "4", "--finetune-steps", "3",
           "--settings", str(d / "fast.yaml"), "--timeout", "120", "--eval-models", "2"]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    killed_at, t0 = None, time.monotonic()
    while proc.poll() is None and time.monotonic() - t0 < 120:
        if _stage(out) == (1, "label") and (n := _count(out / "store.hstore")) > 16:
            proc.send_signal(signal.SIGKILL)
            killed_at = n
            break
        time.sleep(0.005)
    log = proc.communicate()[0].decode(errors="replace")
    assert killed_at is not None, f"the loop was not caught while labelling:\n{log[-3000:]}"
    n_picks = json.loads((out / "state.json").read_text())["n_picks"]
    assert n_picks == BUDGET and 16 < killed_at < 16 + BUDGET  # killed after a label, before the last one
    res = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]

    rec = json.loads((out / "round_01" / "record.json").read_text())
    assert rec["labels"] == BUDGET and len(rec["picks"]) == BUDGET
    with HessianStore.open(out / "store.hstore") as st:
        samples = list(st)
    assert len(samples) == 16 + BUDGET  # resumed without labelling anything twice
    assert len({s.geometry_hash() for s in samples}) == len(samples)
    assert all(s.hessian is not None for s in samples[16:])
    with HessianStore.open(d / "seed.hstore") as seed:
        assert len(seed) == 16  # the seed store is never written
        seed_idx = store_index(seed)
    picks = read_xyz(out / "round_01" / "picks.xyz")
    assert [p.key for p in picks] == [p["key"] for p in rec["picks"]]
    assert min(seed_idx.nearest(p.numbers, p.pos) for p in picks) >= MIN_RMSD
    scores = [p["score"] for p in rec["picks"]]
    assert scores == sorted(scores, reverse=True) and scores[-1] >= rec["scores"]["median"]
    assert {"search", "select", "label", "finetune", "evaluate"} <= set(rec["timings"])
    assert 0 < rec["killed_s"] <= rec["timings"]["label"]  # the killed session's labelling is counted
    ts = rec["metrics"]["ts"]
    assert ts["n_reactions"] == 1 and "hessian_mae" in rec["metrics"]["labelled"]["mean"]
    assert [m["n_reactions"] for m in ts["members"]] == [1, 1] and (out / "round_01" / "heldout_ts_m1").is_dir()
    assert ts["intended_mean"] == sum(m["intended"] for m in ts["members"]) / 2
    assert all(Path(m).is_file() for m in rec["models"]) and "finetune" in rec["models"][0]
    report = (out / "report.md").read_text()
    assert "| 1 | 8 |" in report and (out / "learning_curve.png").stat().st_size > 1000


HCN_HNC = """3
charge=0 multiplicity=1
H 0.000 0.000 -1.066
C 0.000 0.000 0.000
N 0.000 0.000 1.156
3
charge=0 multiplicity=1
H 0.000 0.000 2.150
C 0.000 0.000 0.000
N 0.000 0.000 1.170
"""


@pytest.mark.dft
def test_a_dft_round_labels_one_tiny_geometry(setup, tmp_path):
    pytest.importorskip("pyscf", reason="the dft engine needs PySCF")
    from horm.data.store import HessianStore
    from horm.learn import LearnSettings, run_learning

    pool = tmp_path / "pool"
    pool.mkdir()
    (pool / "hcn.xyz").write_text(HCN_HNC)
    out = tmp_path / "out"
    dft = {"basis": "sto-3g", "density_fit": False, "grid_level": 1, "hessian_grid_level": 1, "use_gpu": False}
    import yaml

    s = LearnSettings(reactions=str(pool), models=(str(setup / "m0"), str(setup / "m1")), out=str(out),
                      engine="dft", rounds=1, budget=1, finetune_steps=0, engine_settings=dft,
                      ts_settings=yaml.safe_load(FAST), timeout=120)
    state = run_learning(s)
    rec = state["rounds"][-1]
    assert rec["round"] == 1 and rec["labels"] == 1 and rec["pool_size"] >= 1
    with HessianStore.open(out / "store.hstore") as st:
        assert len(st) == 1 and st.failures() == []
        x = st[0]
        assert st.meta["provenance"]["engine"] == "dft" and "sto-3g" in st.meta["level_of_theory"].lower()
    assert x.key.startswith("r01:hcn:") and x.hessian.shape == (9, 9)
    h = x.hessian.astype(float)
    assert np.allclose(h, h.T, atol=1e-3)  # a DFT Hessian of the picked geometry, not a model's
    assert x.energy < -2400  # ~ -92 Hartree for HCN at this level, in eV

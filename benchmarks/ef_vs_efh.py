"""E-F versus E-F-H training for `leftnet` and `leftnet-df`, same step budget, one table.

Trains four models (leftnet E-F, leftnet E-F-H with N_HR=1, leftnet-df E-F, leftnet-df
E-F-H with N_HR=2, the paper's choices) with identical settings apart from the loss, then
evaluates them side by side on a held-out set and prints the relative change of the
Hessian MAE and of the asymmetry. No hyper-parameter is chosen on the test set: every run
uses the fixed settings below (``--steps``, ``--batch``, ``--lr``) and the final weights.

    python benchmarks/ef_vs_efh.py --train TRAIN --test TEST [--steps 600] [--out runs/ef_vs_efh]

Defaults: the bundled xTB splits (``horm.datasets``), tiny preset.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from horm.data.io import open_dataset
from horm.evaluate.metrics import evaluate_model, summarise
from horm.evaluate.report import write_report
from horm.train.config import TrainConfig
from horm.models.files import load_model
from horm.train.run import train

RUNS = {  # name -> overrides
    "leftnet E-F": ["model.name=leftnet", "loss.hessian=0"],
    "leftnet E-F-H": ["model.name=leftnet", "loss.hessian=4", "loss.n_hr=1"],
    "leftnet-df E-F": ["model.name=leftnet-df", "loss.hessian=0"],
    "leftnet-df E-F-H": ["model.name=leftnet-df", "loss.hessian=4", "loss.n_hr=2"],
}


def _bundled(split: str) -> str:
    from horm.datasets import bundled_split_path

    return str(bundled_split_path(split))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", default=None, help="training data (default: bundled xTB train split)")
    ap.add_argument("--test", default=None, help="held-out data (default: bundled xTB val split)")
    ap.add_argument("--out", default="runs/ef_vs_efh")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--only", nargs="*", default=None, help="subset of run names to train (others reused)")
    args = ap.parse_args()
    train_path = args.train or _bundled("train")
    test_path = args.test or _bundled("val")
    out = Path(args.out)
    common = [f"model.preset={args.preset}", f"trainer.max_steps={args.steps}", f"trainer.batch_size={args.batch}",
              f"optim.lr={args.lr}", "optim.warmup_steps=20", "data.val_fraction=0", "trainer.progress_bar=false",
              f"trainer.ckpt_every_n_steps={args.steps}", "trainer.log_every_n_steps=25"]
    walls = {}
    for name, ov in RUNS.items():
        run_dir = out / name.replace(" ", "_")
        if (run_dir / "model.pt").is_file() and (args.only is None or name not in args.only):
            walls[name] = json.loads((run_dir / "run.json").read_text())["wall_s"]
            continue
        cfg = TrainConfig.from_dict({"data": {"train": train_path}, "out": str(run_dir)})
        cfg.apply_overrides(common + ov)
        t0 = time.perf_counter()
        train(cfg)
        walls[name] = time.perf_counter() - t0
    test = open_dataset(test_path)
    results = {}
    for name in RUNS:
        model, _ = load_model(out / name.replace(" ", "_"))
        metrics, preds = evaluate_model(model, test, batch_size=16)
        results[name] = (metrics, summarise(metrics), preds)
    write_report(results, out / "eval")
    print((out / "eval" / "report.md").read_text())
    print(f"test set: {test_path} ({len(test)} samples); train: {train_path}; {args.steps} steps, batch {args.batch}")
    print("training wall time (s): " + ", ".join(f"{k}: {v:.0f}" for k, v in walls.items()))
    for arch in ("leftnet", "leftnet-df"):
        ef, efh = results[f"{arch} E-F"][1], results[f"{arch} E-F-H"][1]
        for m in ("hessian_mae", "eigval_mae", "asym_mae", "asym_rel", "forces_mae", "energy_mae"):
            a, b = ef[m]["mean"], efh[m]["mean"]
            print(f"{arch:<11} {m:<12} E-F {a:.4g} → E-F-H {b:.4g}  ({100 * (b - a) / a:+.0f}%)" if a else
                  f"{arch:<11} {m:<12} E-F {a:.4g} → E-F-H {b:.4g}")


if __name__ == "__main__":
    main()

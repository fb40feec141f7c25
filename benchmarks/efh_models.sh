#!/bin/bash
# E-F vs E-F-H for the direct-force equiformer_v2 and the autograd alphanet (and leftnet E-F-H),
# all tiny presets, same budget (400 steps, batch 8, lr 1e-3 cosine, seed 0), trained on the
# bundled t1x_xtb train split and evaluated side by side on its val split.
#   bash benchmarks/efh_models.sh [OUT]        (about 5 min on 2 idle CPU cores)
set -eu
OUT=${1:-runs/efh_models}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
TR=$(python -c "from horm.datasets import bundled_split_path as p; print(p('train'))")
VA=$(python -c "from horm.datasets import bundled_split_path as p; print(p('val'))")
COMMON="model.preset=tiny trainer.max_steps=400 trainer.batch_size=8 trainer.seed=0 optim.lr=1e-3 optim.schedule=cosine
optim.warmup_steps=20 data.val_fraction=0 trainer.progress_bar=false trainer.ckpt_every_n_steps=1000"
run() { local name=$1; shift; horm train --data "$TR" --out "$OUT/$name" $COMMON "$@"; }
run eqv2_EF model.name=equiformer_v2 loss.hessian=0
run eqv2_EFH model.name=equiformer_v2 loss.n_hr=2
run alphanet_EF model.name=alphanet loss.hessian=0
run alphanet_EFH model.name=alphanet loss.n_hr=1
run leftnet_EFH model.name=leftnet loss.n_hr=1
horm evaluate "$OUT"/eqv2_EF "$OUT"/eqv2_EFH "$OUT"/alphanet_EF "$OUT"/alphanet_EFH "$OUT"/leftnet_EFH \
  --data "$VA" --out "$OUT/eval"

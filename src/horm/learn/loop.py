"""``run_learning(settings)``: the active-learning loop, resumable at any stage.

Round 0 evaluates the starting committee. Each round r ≥ 1 then runs, in
``OUT/round_rr/``, with a marker in ``OUT/state.json`` (:mod:`horm.learn.state`) after each:

1. ``search``: TS searches over the round's training reactions (:mod:`horm.learn.pool`);
2. ``select``: the visited pool (a seeded subset of at most ``pool_max`` geometries) scored
   by the committee (:mod:`horm.learn.committee`; skipped for ``strategy="random"``) and
   ``budget`` picks (:mod:`horm.learn.selection`), none within ``min_rmsd`` of another pick,
   of a stored geometry or of an earlier round's pick (so a geometry whose label failed is
   not paid for twice); written to ``picks.xyz`` (keys ``rRR:<rxn>:<origin>``) and ``scores.json``;
3. ``label``: the picks labelled into ``OUT/store.hstore`` by :func:`horm.label.runner.label`
   (resumable: a rerun skips stored keys; failures go to the store's failures table);
4. ``finetune``: every model warm-started on the store (:mod:`horm.learn.finetune`);
5. ``evaluate``: held-out TS search and Hessian MAE (:mod:`horm.learn.evaluation`), then
   the round's record (``round_rr/record.json``) and ``OUT/report.md``.

The learner's store starts as a copy of ``seed_store`` (the seed is never written). A
second loop on the same ``OUT`` is refused (:func:`horm.jobs.output_lock`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from horm.jobs import JobOptions, output_lock
from horm.learn.config import LearnSettings
from horm.learn.state import advance, count_killed_session, load_state, new_state, round_dir, save_state, \
    start_stage

STORE = "store.hstore"


def _store_len(path: Path) -> int:
    from horm.data.store import HessianStore

    if not path.exists():
        return 0
    with HessianStore.open(path) as st:
        return len(st)


def _init(s: LearnSettings, out: Path) -> dict:
    from horm.data.store import HessianStore

    state = load_state(out)
    if state is not None:
        s.check_resume(state["settings"])
        state["settings"] = s.to_dict()
        count_killed_session(out, state)
        return state
    store = out / STORE
    if s.seed_store is not None:
        tmp = out / (STORE + ".tmp")
        tmp.unlink(missing_ok=True)
        with HessianStore.open(s.seed_store) as seed:
            seed.compact(tmp)
        os.replace(tmp, store)
    state = new_state(s.to_dict(), _store_len(store))
    save_state(out, state)
    return state


def _jobs(s: LearnSettings) -> dict:
    return {"workers": s.workers, "timeout": s.timeout, "ray": s.ray, "charge": s.charge,
            "multiplicity": s.multiplicity, "dtype": s.dtype}


def _stage_search(s: LearnSettings, out: Path, state: dict, ts) -> None:
    from horm.learn.pool import run_searches, select_pool_reactions

    r = state["round"]
    held = [p.stem for p in Path(s.heldout_reactions).glob("*.xyz")] if s.heldout_reactions else []
    files = select_pool_reactions(s.reactions, s.pool_reactions, s.seed + r, held)
    t0 = time.perf_counter()
    run_searches(files, state["models"][: s.search_models], round_dir(out, r) / "search", ts, _jobs(s))
    advance(out, state, "select", time.perf_counter() - t0, pool_reactions=[f.stem for f in files])


def _stage_select(s: LearnSettings, out: Path, state: dict) -> None:
    from horm.data.store import HessianStore
    from horm.data.xyz import write_extxyz
    from horm.learn.committee import load_committee, score_pool
    from horm.learn.pool import collect_visited, subsample
    from horm.learn.selection import GeometryIndex, select, store_index
    from horm.safe_io import write_json_atomic

    r, rd = state["round"], round_dir(out, state["round"])
    t0 = time.perf_counter()
    visited = collect_visited([rd / "search" / f"m{i}" for i in range(s.search_models)], f"r{r:02d}")
    pool = subsample(visited, s.pool_max, s.seed + r)
    scores = None
    if s.strategy != "random" and pool:
        scores = score_pool(load_committee(state["models"]), pool, s.score, s.committee, s.eigen_k, s.eigvec_weight)
    exclude = GeometryIndex()
    if (out / STORE).exists():
        with HessianStore.open(out / STORE) as st:
            exclude = store_index(st)
    for p in _earlier_picks(out, r):  # labelled (already in the store) or failed: never picked again
        exclude.add(p.numbers, p.pos)
    picks = select(s.strategy, scores, [p.numbers for p in pool], [p.pos for p in pool], s.budget, s.min_rmsd,
                   exclude, seed=s.seed + r, trust=None if s.trust_lo is None else (s.trust_lo, s.trust_hi))
    if picks:
        tmp = rd / "picks.tmp.xyz"
        write_extxyz(tmp, [pool[i] for i in picks])
        os.replace(tmp, rd / "picks.xyz")
    write_json_atomic(rd / "scores.json", {"keys": [p.key for p in pool], "scores": None if scores is None else
                                           scores.tolist(), "picked": picks})
    advance(out, state, "label", time.perf_counter() - t0, visited=len(visited), pool_size=len(pool),
            n_picks=len(picks))


def _earlier_picks(out: Path, r: int) -> list:
    """Every geometry picked in rounds 1 … r − 1, whether its label was stored or failed."""
    from horm.data.xyz import read_xyz

    return [p for k in range(1, r) if (round_dir(out, k) / "picks.xyz").is_file()
            for p in read_xyz(round_dir(out, k) / "picks.xyz")]


def _stage_label(s: LearnSettings, out: Path, state: dict) -> None:
    from horm.label import get_engine
    from horm.label.runner import label

    rd = round_dir(out, state["round"])
    t0 = time.perf_counter()
    summary = None
    if state.get("n_picks"):
        opts = JobOptions(workers=s.workers, ray=s.ray, timeout=s.label_timeout, progress=False)
        summary = label(rd / "picks.xyz", get_engine(s.engine, **s.engine_settings), out / STORE, jobs=opts,
                        charge=s.charge, multiplicity=s.multiplicity, print_summary=False).record()
    advance(out, state, "finetune", time.perf_counter() - t0, label_summary=summary)


def _stage_finetune(s: LearnSettings, out: Path, state: dict) -> None:
    from horm.learn.finetune import finetune_models

    r = state["round"]
    t0 = time.perf_counter()
    models = state["models"]
    if (out / STORE).exists():
        models = finetune_models(models, str(out / STORE), round_dir(out, r), r, s.finetune_steps, s.seed,
                                 s.train_overrides)
    advance(out, state, "evaluate", time.perf_counter() - t0, next_models=models)


def _stage_evaluate(s: LearnSettings, out: Path, state: dict, ts) -> None:
    from horm.learn.evaluation import evaluate_round

    r = state["round"]
    t0 = time.perf_counter()
    models = state.get("next_models") or state["models"]
    metrics = evaluate_round(models, s, round_dir(out, r), out, ts, _jobs(s))
    advance(out, state, "done", time.perf_counter() - t0, metrics=metrics)


def _stage_done(s: LearnSettings, out: Path, state: dict) -> None:
    """The round's record, then the next round's start (and report.md)."""
    from horm.learn.report import write_report
    from horm.safe_io import write_json_atomic

    r = state["round"]
    models = state.get("next_models") or state["models"]
    rec = _record(s, out, state, models, state.get("metrics", {}))
    write_json_atomic(round_dir(out, r) / "record.json", rec)
    state["rounds"] = [x for x in state["rounds"] if x["round"] != r] + [rec]
    state.update(round=r + 1, stage="search", models=models, timings={})
    for k in ("stage_started", "killed_s", "next_models", "pool_reactions", "visited", "pool_size", "n_picks",
              "label_summary", "metrics"):
        state.pop(k, None)
    save_state(out, state)
    write_report(out, s.compare)


def _record(s: LearnSettings, out: Path, state: dict, models: list, metrics: dict) -> dict:
    r, rd = state["round"], round_dir(out, state["round"])
    rec = {"round": r, "strategy": s.strategy, "labels": _store_len(out / STORE) - state["seed_count"],
           "seed_count": state["seed_count"], "models": models, "metrics": metrics,
           "timings": dict(state.get("timings", {})), "pool_reactions": state.get("pool_reactions", []),
           "visited": state.get("visited", 0), "pool_size": state.get("pool_size", 0),
           "label_summary": state.get("label_summary")}
    rec["seconds"] = round(sum(rec["timings"].values()), 3)
    rec["killed_s"] = state.get("killed_s", 0.0)  # of those seconds, counted from killed sessions
    if (rd / "scores.json").exists():
        sc = json.loads((rd / "scores.json").read_text())
        keys, scores = sc["keys"], sc["scores"]
        rec["picks"] = [{"key": keys[i], "score": None if scores is None else scores[i]} for i in sc["picked"]]
        if scores:
            a = np.asarray(scores)
            rec["scores"] = {"n": int(a.size), "min": float(a.min()), "median": float(np.median(a)),
                             "max": float(a.max())}
    return rec


def run_learning(settings: LearnSettings) -> dict:
    """Run (or resume) the loop of ``settings`` up to ``settings.rounds``; returns the final state."""
    from horm.ts.workflow import RunSettings

    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    ts = RunSettings.from_dict(settings.ts_settings)
    with output_lock(out):
        state = _init(settings, out)
        steps = {"search": lambda: _stage_search(settings, out, state, ts),
                 "select": lambda: _stage_select(settings, out, state),
                 "label": lambda: _stage_label(settings, out, state),
                 "finetune": lambda: _stage_finetune(settings, out, state),
                 "evaluate": lambda: _stage_evaluate(settings, out, state, ts),
                 "done": lambda: _stage_done(settings, out, state)}
        while state["round"] <= settings.rounds:
            start_stage(out, state)
            steps[state["stage"]]()
    return state

"""The loop's durable state: ``OUT/state.json``, rewritten atomically after every stage.

``{"version", "settings", "seed_count", "round", "stage", "models", "timings", "rounds"}``:
``round`` is the round in progress (0: evaluating the starting committee), ``stage`` the
next stage to run in it (one of :data:`STAGES`; ``done`` once the round is recorded),
``models`` the committee the round starts from, ``timings`` the seconds each stage of the
round took, ``rounds`` the finished rounds' records (also in ``OUT/round_NN/record.json``).
A stage's start time is saved as it starts (``stage_started``); when a killed session is
resumed, the time from that start to the newest file the killed session wrote under ``OUT``
is added to the stage's timing and to ``killed_s`` (a lower bound: what ran after the last
write is not seen). A kill at any point leaves the last
stage marker; a rerun redoes at most the stage it was in, and every stage is itself
resumable (TS searches, labels) or deterministic (selection).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from horm.errors import DataError

STATE = "state.json"
STATE_VERSION = 1
STAGES = ("search", "select", "label", "finetune", "evaluate", "done")


def round_dir(out, r: int) -> Path:
    return Path(out) / f"round_{r:02d}"


def save_state(out, state: dict) -> Path:
    from horm.safe_io import write_json_atomic

    return write_json_atomic(Path(out) / STATE, state)


def load_state(out) -> dict | None:
    """The saved state of ``out`` (None when the run has not started); a damaged file is a DataError."""
    p = Path(out) / STATE
    if not p.exists():
        return None
    try:
        state = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(str(p), f"not a readable learn state ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION or state.get("stage") not in STAGES \
            or not isinstance(state.get("round"), int) or not isinstance(state.get("models"), list):
        raise DataError(str(p), "not a horm learn state (version, round, stage or models missing)")
    return state


def new_state(settings: dict, seed_count: int) -> dict:
    return {"version": STATE_VERSION, "settings": settings, "seed_count": int(seed_count), "round": 0,
            "stage": "evaluate", "models": list(settings["models"]), "timings": {}, "rounds": []}


def start_stage(out, state: dict) -> None:
    """Save the wall-clock start of the stage about to run (see :func:`count_killed_session`)."""
    state["stage_started"] = time.time()
    save_state(out, state)


def _newest_write(out: Path, since: float) -> float | None:
    newest = None
    for root, _, files in os.walk(out):
        for f in files:
            if f == STATE:
                continue
            try:
                t = os.stat(os.path.join(root, f)).st_mtime
            except OSError:
                continue
            if t >= since and (newest is None or t > newest):
                newest = t
    return newest


def count_killed_session(out, state: dict) -> float:
    """On resume: add the killed session's share of the current stage to its timing; returns it (s)."""
    started = state.pop("stage_started", None)
    if started is None:
        return 0.0
    last = _newest_write(Path(out), float(started))
    lost = max(0.0, last - float(started)) if last is not None else 0.0
    t = state.setdefault("timings", {})
    t[state["stage"]] = round(t.get(state["stage"], 0.0) + lost, 3)
    state["killed_s"] = round(state.get("killed_s", 0.0) + lost, 3)
    save_state(out, state)
    return lost


def advance(out, state: dict, stage: str, seconds: float, **fields) -> dict:
    """Mark ``state["stage"]`` finished (its seconds added to the round's timings), set ``fields``,
    move on to ``stage`` and save."""
    t = state.setdefault("timings", {})
    t[state["stage"]] = round(t.get(state["stage"], 0.0) + seconds, 3)
    state.update(fields)
    state.pop("stage_started", None)
    state["stage"] = stage
    save_state(out, state)
    return state

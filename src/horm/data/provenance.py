"""Provenance is enforced, not only recorded: a store holds labels of one level of theory.

A store's ``__meta__`` names the level of theory and, for labelled stores, the engine and
its settings. Appending labels that differ in any of these is refused, unless the caller
allows mixing: then the store's level of theory becomes ``"mixed"`` and every source is
listed under ``mixed_sources``. Settings that change how a calculation runs but not its
result (threads, GPU use, memory, iteration limits, SCF retry) are not compared.
"""

from __future__ import annotations

from typing import Any

from horm.errors import DataError

MIXED = "mixed"
EXECUTION_ONLY = frozenset({"threads", "use_gpu", "max_memory_mb", "max_cycle", "max_iter", "retry"})


def label_provenance(level_of_theory: str, engine: str | None = None,
                     engine_settings: dict | None = None) -> dict[str, Any]:
    """The fields that must agree for labels to share a store."""
    settings = None if engine_settings is None else {
        k: v for k, v in sorted(dict(engine_settings).items()) if k not in EXECUTION_ONLY}
    return {"level_of_theory": str(level_of_theory), "engine": engine, "engine_settings": settings}


def store_provenance(meta: dict) -> dict[str, Any]:
    prov = meta.get("provenance") or {}
    return label_provenance(meta.get("level_of_theory", "unknown"), prov.get("engine"), prov.get("engine_settings"))


def _differences(have: dict, new: dict) -> list[str]:
    out = []
    for k in ("level_of_theory", "engine", "engine_settings"):
        a, b = have.get(k), new.get(k)
        if a is None or b is None or a == b:
            continue
        if k == "engine_settings":
            keys = sorted(k2 for k2 in set(a) | set(b) if a.get(k2) != b.get(k2))
            out.append("engine settings " + ", ".join(f"{k2} {a.get(k2)!r} vs {b.get(k2)!r}" for k2 in keys))
        else:
            out.append(f"{k.replace('_', ' ')} {a!r} vs {b!r}")
    return out


def check_append(store, new: dict, allow_mixed: bool = False) -> None:
    """Refuse to append labels of provenance ``new`` to ``store`` unless they agree or
    ``allow_mixed``; with ``allow_mixed`` a disagreement marks the store ``"mixed"``."""
    have = store_provenance(store.meta)
    mixed = have["level_of_theory"] == MIXED
    diff = ["the store is already mixed"] if mixed and new["level_of_theory"] != MIXED else _differences(have, new)
    if not diff:
        return
    if not allow_mixed:
        raise DataError(str(store.path), f"refusing to mix labels: {'; '.join(diff)} (use another output, "
                                         "or --allow-mixed to mark the store 'mixed')")
    sources = list(store.meta.get("mixed_sources") or ([] if mixed else [have]))
    if new not in sources:
        sources.append(new)
    store.update_meta(level_of_theory=MIXED, mixed_sources=sources)

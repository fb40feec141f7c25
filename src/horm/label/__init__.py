"""Labelling engines (energy, forces, Hessian) behind one protocol; see engine.py."""

from horm.label.engine import ENGINE_NAMES, LABELS, Engine, get_engine

__all__ = ["ENGINE_NAMES", "LABELS", "Engine", "get_engine"]

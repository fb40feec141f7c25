"""Adapters that let other codes drive horm potentials (each behind its optional extra)."""

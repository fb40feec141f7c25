"""horm: reactive machine-learning interatomic potentials that know their Hessians."""

__version__ = "0.1.0"

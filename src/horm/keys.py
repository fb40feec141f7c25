"""Field names used across horm, with shape and unit.

One place for the vocabulary (the nequip ``_keys.py`` pattern). N is the number of
atoms of one molecule, B the number of molecules in a batch.
"""

NUMBERS = "numbers"  # (N,) int | atomic numbers
POS = "pos"  # (N, 3) float | Cartesian positions, Å
ENERGY = "energy"  # () float | total energy, eV
FORCES = "forces"  # (N, 3) float | forces = -dE/dr, eV/Å
HESSIAN = "hessian"  # (3N, 3N) float32 | d²E/dr², eV/Å², index 3*atom + xyz
CHARGE = "charge"  # () int | total charge, e
MULTIPLICITY = "multiplicity"  # () int | spin multiplicity 2S+1
RXN = "rxn"  # str | reaction id the geometry belongs to
ORIGIN = "origin"  # str | how the geometry was made (e.g. "neb:iter3:img5", "irc:f:4", "horm")
KEY = "key"  # str | unique id of a sample inside a store (used for resume / dedupe)

# Batched (torch) fields
BATCH = "batch"  # (N_total,) long | molecule index of each atom
NATOMS = "natoms"  # (B,) long | atoms per molecule
PTR = "ptr"  # (B+1,) long | atom offsets of each molecule

# Optional extras carried through from HORM files
AE = "ae"  # () float | energy minus per-element references, eV
FREQ = "freq"  # (3N,) float | frequencies as stored by HORM
EIG_VALUES = "eig_values"  # (3N,) float | Hessian eigenvalues as stored by HORM
FORCE_CONSTANT = "force_constant"  # (3N,) float | as stored by HORM

OPTIONAL_EXTRAS = (AE, FREQ, EIG_VALUES, FORCE_CONSTANT)

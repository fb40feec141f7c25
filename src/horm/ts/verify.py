"""Was the TS the one we wanted? Bond graphs, the intended check, barrier and aligned RMSD.

- Bond graph: atoms i, j are bonded when |r_i − r_j| < scale·(r_cov,i + r_cov,j), with
  ASE's covalent radii (``natural_cutoffs``) and ``NeighborList``; nodes carry the
  atomic number. Two graphs are "the same" when networkx finds an isomorphism that
  maps elements onto equal elements (so an equivalent H shuffle still matches).
- Same species: two geometries hold the same species when their bond graphs are the
  same at one of the scales ``BOND_SCALES`` (1.2, 1.25, 1.3). One fixed scale is fragile
  across levels of theory: long bonds sit near any cutoff (H₂ is 0.74 Å in DFT and
  0.78 Å in GFN2-xTB, against 0.74 Å at scale 1.2; a 2.01 Å C–C in a DFT product is
  1.95 Å in xTB, against 1.98 Å at scale 1.3). On 44 xTB IRCs of the T1x set the intended
  count moved by up to 5 between single scales 1.2 and 1.3.
- Outcome of an IRC with endpoints (a, b), judged against the reaction's R and P:
  ``intended`` (one endpoint is R, the other P), ``P-unintended`` (an endpoint is R but
  none is P), ``R-unintended`` (an endpoint is P but none is R), ``unintended`` (neither).
  When R and P share a graph the reaction is a conformational change, flagged apart:
  then graphs alone cannot tell the two sides apart.
- Barrier: E_TS − E_R in kcal/mol (energies in eV in, ``horm.units.EV_TO_KCAL_MOL``).
- RMSD: after optimal rotation and translation (Kabsch, ASE's
  ``minimize_rotation_and_translation``), same atom order assumed, Å.
"""

from __future__ import annotations

from typing import Literal, get_args

import networkx as nx
import numpy as np

from horm.units import EV_TO_KCAL_MOL

Outcome = Literal["intended", "R-unintended", "P-unintended", "unintended"]
OUTCOMES: tuple[str, ...] = get_args(Outcome)

BOND_SCALES: tuple[float, ...] = (1.2, 1.25, 1.3)
"""Bond when the distance is below scale × (sum of ASE's covalent radii); the species test
tries these scales (see the module docstring). Even at 1.3, H···O hydrogen bonds
(≳ 1.7 Å against a 1.26 Å cutoff) and 1-3 contacts stay unbonded."""
BOND_SCALE = 1.3  # the single scale used by ``bond_graph`` when none is given


def bond_graph(numbers, pos, scale: float = BOND_SCALE) -> nx.Graph:
    """Covalent bond graph: nodes 0..N−1 with attribute ``Z``; edges between bonded atoms.

    numbers: (N,) atomic numbers; pos: (N, 3) Å.
    """
    from ase import Atoms
    from ase.neighborlist import NeighborList, natural_cutoffs

    atoms = Atoms(numbers=np.asarray(numbers), positions=np.asarray(pos, dtype=float))
    g = nx.Graph()
    g.add_nodes_from((i, {"Z": int(z)}) for i, z in enumerate(atoms.numbers))
    if len(atoms) > 1:
        nl = NeighborList(natural_cutoffs(atoms, mult=scale), skin=0.0, self_interaction=False,
                          bothways=False)
        nl.update(atoms)
        for i in range(len(atoms)):
            for j in nl.get_neighbors(i)[0]:
                g.add_edge(i, int(j))
    return g


def same_graph(g1: nx.Graph, g2: nx.Graph) -> bool:
    """True when the graphs are isomorphic with matching elements."""
    return nx.is_isomorphic(g1, g2, node_match=nx.algorithms.isomorphism.categorical_node_match("Z", None))


def same_species(numbers, pos_a, pos_b, scales=BOND_SCALES) -> bool:
    """True when the bond graphs of two geometries (same atoms) match at one of ``scales``."""
    return any(same_graph(bond_graph(numbers, pos_a, s), bond_graph(numbers, pos_b, s)) for s in scales)


def classify(a_is_r: bool, a_is_p: bool, b_is_r: bool, b_is_p: bool) -> Outcome:
    """Outcome of an IRC from whether its (relaxed) ends a and b are the reactant/product."""
    if (a_is_r and b_is_p) or (b_is_r and a_is_p):
        return "intended"
    if a_is_r or b_is_r:
        return "P-unintended"
    if a_is_p or b_is_p:
        return "R-unintended"
    return "unintended"


def aligned_rmsd(pos_a, pos_b) -> float:
    """RMSD (Å) between two conformations of the same atoms after optimal superposition.

    pos_a, pos_b: (N, 3) Å in the same atom order.
    """
    a = np.asarray(pos_a, dtype=float)
    b = np.asarray(pos_b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"cannot compare geometries of shapes {a.shape} and {b.shape}")
    return float(aligned_rmsd_many(a, b[None])[0])


def aligned_rmsd_many(ref, others) -> np.ndarray:
    """Aligned RMSD (Å) of ``ref`` (N, 3) to each of ``others`` (M, N, 3): optimal rotation
    and translation (Kabsch, reflections excluded), equal weights. Shape (M,)."""
    a = np.asarray(ref, dtype=np.float64)
    b = np.asarray(others, dtype=np.float64).reshape(-1, *a.shape)
    if b.shape[0] == 0:
        return np.zeros(0)
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=1, keepdims=True)
    cov = np.einsum("mni,nj->mij", b, a)  # (M, 3, 3): Bᵀ A
    u, _, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(u @ vt))
    u[:, :, 2] *= d[:, None]  # no reflections
    rot = u @ vt  # B @ rot is B rotated onto A
    diff = np.einsum("mni,mij->mnj", b, rot) - a
    return np.sqrt((diff ** 2).sum(axis=(1, 2)) / len(a))


def barrier_kcal_mol(e_ts: float, e_reactant: float) -> float:
    """E_TS − E_R converted from eV to kcal/mol."""
    return float((e_ts - e_reactant) * EV_TO_KCAL_MOL)


def verify_irc(numbers, reactant_pos, product_pos, end_a_pos, end_b_pos, scales=BOND_SCALES) -> dict:
    """Graph-based verdict on one IRC (positions (N, 3) Å, same atom order throughout).

    Returns ``outcome`` (one of OUTCOMES), ``conformational`` (R and P are the same
    species), ``reactant_end`` ("a" or "b": the end taken as the reactant side, or None
    when no end is R; when both are, the one paired with a product end, else the one
    closer to the input reactant by aligned RMSD), and the per-end matches.
    """
    m = {(end, ref): same_species(numbers, e_pos, r_pos, scales)
         for end, e_pos in (("a", end_a_pos), ("b", end_b_pos))
         for ref, r_pos in (("R", reactant_pos), ("P", product_pos))}
    outcome = classify(m["a", "R"], m["a", "P"], m["b", "R"], m["b", "P"])
    if outcome == "intended":
        reactant_end = "a" if (m["a", "R"] and m["b", "P"]) else "b"
        if m["a", "R"] and m["b", "P"] and m["b", "R"] and m["a", "P"]:  # R and P alike
            reactant_end = "a" if aligned_rmsd(reactant_pos, end_a_pos) <= aligned_rmsd(reactant_pos, end_b_pos) else "b"
    elif m["a", "R"] or m["b", "R"]:
        reactant_end = "a" if m["a", "R"] else "b"
    else:
        reactant_end = None
    return {
        "outcome": outcome,
        "conformational": same_species(numbers, reactant_pos, product_pos, scales),
        "reactant_end": reactant_end,
        "a_matches": {"R": m["a", "R"], "P": m["a", "P"]},
        "b_matches": {"R": m["b", "R"], "P": m["b", "P"]},
    }

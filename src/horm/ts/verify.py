"""Was the TS the one we wanted? Bond graphs, the intended check, barrier and aligned RMSD.

- Bond graph: atoms i, j are bonded when |r_i − r_j| < scale·(r_cov,i + r_cov,j), with
  ASE's covalent radii (``natural_cutoffs``) and ``NeighborList``; nodes carry the
  atomic number. Two graphs are "the same" when networkx finds an isomorphism that
  maps elements onto equal elements (so an equivalent H shuffle still matches).
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

BOND_SCALE = 1.3
"""Bond when the distance is below this times the sum of ASE's covalent radii. 1.2 is too
tight for H–H (0.744 Å, while H₂ is 0.74 Å in DFT and 0.777 Å in GFN2-xTB); 1.3 keeps
H···O hydrogen bonds (≳ 1.7 Å against a 1.26 Å cutoff) and 1-3 contacts unbonded."""


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


def classify(endpoint_a: nx.Graph, endpoint_b: nx.Graph, reactant: nx.Graph, product: nx.Graph) -> Outcome:
    """Outcome of an IRC whose two (optimised) endpoints have graphs a and b."""
    r = (same_graph(endpoint_a, reactant), same_graph(endpoint_b, reactant))
    p = (same_graph(endpoint_a, product), same_graph(endpoint_b, product))
    if (r[0] and p[1]) or (r[1] and p[0]):
        return "intended"
    if any(r):
        return "P-unintended"
    if any(p):
        return "R-unintended"
    return "unintended"


def aligned_rmsd(pos_a, pos_b) -> float:
    """RMSD (Å) between two conformations of the same atoms after optimal superposition.

    pos_a, pos_b: (N, 3) Å in the same atom order.
    """
    from ase import Atoms
    from ase.build import minimize_rotation_and_translation

    a = np.asarray(pos_a, dtype=float)
    b = np.asarray(pos_b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"cannot compare geometries of shapes {a.shape} and {b.shape}")
    target = Atoms(f"H{len(a)}", positions=a)
    moved = Atoms(f"H{len(b)}", positions=b)
    minimize_rotation_and_translation(target, moved)
    return float(np.sqrt(np.mean(np.sum((moved.positions - a) ** 2, axis=1))))


def barrier_kcal_mol(e_ts: float, e_reactant: float) -> float:
    """E_TS − E_R converted from eV to kcal/mol."""
    return float((e_ts - e_reactant) * EV_TO_KCAL_MOL)


def verify_irc(numbers, reactant_pos, product_pos, end_a_pos, end_b_pos,
               scale: float = BOND_SCALE) -> dict:
    """Graph-based verdict on one IRC.

    Returns ``outcome`` (one of OUTCOMES), ``conformational`` (R and P share a graph),
    ``reactant_end`` ("a" or "b": the endpoint taken as the reactant side, or None when
    none matches R; when both match, the one closer to the input reactant by RMSD), and
    the per-endpoint matches.
    """
    g_r = bond_graph(numbers, reactant_pos, scale)
    g_p = bond_graph(numbers, product_pos, scale)
    g_a = bond_graph(numbers, end_a_pos, scale)
    g_b = bond_graph(numbers, end_b_pos, scale)
    outcome = classify(g_a, g_b, g_r, g_p)
    a_is_r, b_is_r = same_graph(g_a, g_r), same_graph(g_b, g_r)
    if a_is_r and b_is_r:
        reactant_end = "a" if aligned_rmsd(reactant_pos, end_a_pos) <= aligned_rmsd(reactant_pos, end_b_pos) else "b"
    elif a_is_r or b_is_r:
        reactant_end = "a" if a_is_r else "b"
    else:
        reactant_end = None
    if outcome == "intended" and reactant_end is not None:
        # for intended, the reactant side must be the one whose partner is the product
        other_is_p = same_graph(g_b if reactant_end == "a" else g_a, g_p)
        if not other_is_p:
            reactant_end = "b" if reactant_end == "a" else "a"
    return {
        "outcome": outcome,
        "conformational": same_graph(g_r, g_p),
        "reactant_end": reactant_end,
        "a_matches": {"R": a_is_r, "P": same_graph(g_a, g_p)},
        "b_matches": {"R": b_is_r, "P": same_graph(g_b, g_p)},
    }

"""Intended check, barrier and aligned RMSD (horm.ts.verify) on real reaction geometries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from horm.ts.verify import (aligned_rmsd, barrier_kcal_mol, bond_graph, classify, same_graph, same_species,
                             verify_irc)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
RXN = SHARED / "data" / "t1x_val_reactions" / "rxn1929.xyz"


@pytest.fixture(scope="module")
def reaction():
    if not RXN.exists():
        pytest.skip(f"shared reaction set not found at {RXN}")
    from horm.data.xyz import read_reaction

    return read_reaction(RXN)


def test_bond_graph_of_ethane_like_geometry():
    # H3C-CH3 with standard bond lengths: 7 bonds, each C has 4 neighbours
    c1, c2 = np.zeros(3), np.array([1.54, 0.0, 0.0])
    hs = []
    for c, sgn in ((c1, -1), (c2, 1)):
        for k in range(3):
            ang = 2 * np.pi * k / 3
            hs.append(c + np.array([sgn * 0.363, 1.027 * np.cos(ang), 1.027 * np.sin(ang)]))
    g = bond_graph([6, 6] + [1] * 6, np.vstack([c1, c2, *hs]))
    assert g.number_of_edges() == 7
    assert g.degree[0] == 4 and g.degree[1] == 4
    assert all(g.nodes[i]["Z"] == 1 for i in range(2, 8))


def test_reaction_changes_the_graph_and_outcomes_follow(reaction):
    r, p = reaction
    g_r, g_p = bond_graph(r.numbers, r.pos), bond_graph(p.numbers, p.pos)
    assert not same_graph(g_r, g_p)
    assert not same_species(r.numbers, r.pos, p.pos)
    assert classify(True, False, False, True) == "intended"
    assert classify(False, True, True, False) == "intended"  # direction of the IRC does not matter
    assert classify(True, False, True, False) == "P-unintended"
    assert classify(False, True, False, True) == "R-unintended"
    assert classify(False, False, False, False) == "unintended"
    # a fragmented geometry (atoms far apart) is neither side
    v = verify_irc(r.numbers, r.pos, p.pos, r.pos * 3.0, p.pos)
    assert v["outcome"] == "R-unintended" and v["reactant_end"] is None


def test_species_match_tolerates_long_bonds_near_the_cutoff():
    # H2 at the DFT (0.744 Å) and GFN2-xTB (0.777 Å) bond lengths: bonded at scale 1.2 only
    # for the first (cutoff 0.744 Å), at 1.3 for both (0.806 Å): the same species
    short = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.7438]])
    long_ = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.7767]])
    assert not same_graph(bond_graph([1, 1], short, 1.2), bond_graph([1, 1], long_, 1.2))
    assert same_species([1, 1], short, long_)
    # but two H atoms 1.5 Å apart are not H2 at any scale
    assert not same_species([1, 1], short, np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.5]]))


def test_verify_irc_picks_the_reactant_end_and_flags_no_conformational_change(reaction):
    r, p = reaction
    v = verify_irc(r.numbers, r.pos, p.pos, end_a_pos=p.pos + 0.01, end_b_pos=r.pos - 0.01)
    assert v["outcome"] == "intended"
    assert v["reactant_end"] == "b"
    assert v["conformational"] is False


def test_aligned_rmsd_ignores_rigid_motion_and_sees_distortion(reaction):
    r, _ = reaction
    rot = Rotation.from_euler("xyz", [30, -50, 110], degrees=True).as_matrix()
    moved = r.pos @ rot.T + np.array([3.0, -1.0, 2.0])
    assert aligned_rmsd(r.pos, moved) < 1e-6
    bent = r.pos.copy()
    bent[0] += [0.3, 0.0, 0.0]
    d = aligned_rmsd(r.pos, bent)
    assert 0.0 < d < 0.3 / np.sqrt(len(bent)) + 1e-9  # alignment can only lower the plain RMSD


def test_barrier_is_in_kcal_per_mol():
    assert barrier_kcal_mol(-100.0, -101.0) == pytest.approx(23.0605, rel=1e-4)

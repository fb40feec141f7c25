"""The larger xTB set's builder (horm.datasets.build_t1x_xtb_large): disjoint reaction choice,
reaction-level splits, TS-evaluation reactions never labelled, NEB + IRC points, resume."""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("tblite")

from horm.datasets.build_t1x_xtb_large import bundled_reactions, choose_large, split_reactions  # noqa: E402

# 5-atom reactions are labelled (TS evaluation takes 7–12 atoms); both 7-atom ones are TS candidates.
LABELLED = ("rxn2587", "rxn4440")
TS_CANDIDATES = ("rxn1185", "rxn3122")


def test_choice_excludes_the_bundled_set_and_is_disjoint(t1x_dir):
    files = sorted(t1x_dir.glob("rxn*.xyz"))
    used = bundled_reactions(files)
    from horm.datasets import bundled_path

    man = json.loads((bundled_path() / "manifest.json").read_text())
    assert set(man["counts"]["test_reactions"]["names"]) <= used
    assert len(used) == 60 + 16 + 24  # train/val, OOD and the 24 test candidates
    ts_c, chosen = choose_large(files, 0, 320, 48, used)
    names = [f.stem for f in chosen]
    assert len(names) == 320 and len(ts_c) == 96
    assert not set(names) & used and not {f.stem for f in ts_c} & used
    assert not set(names) & {f.stem for f in ts_c}
    assert choose_large(files, 0, 320, 48, used) == (ts_c, chosen)  # seeded
    assert choose_large(files, 1, 320, 48, used)[1] != chosen


def test_split_is_reaction_level_and_stable():
    rxns = [f"rxn{i}" for i in range(2000)]
    parts = split_reactions(rxns, 0.1, 0.1, seed=0)
    assert set().union(*parts.values()) == set(rxns)
    assert sum(map(len, parts.values())) == len(rxns)  # disjoint
    assert 150 < len(parts["test"]) < 250 and 150 < len(parts["val"]) < 250
    grown = split_reactions(rxns + [f"rxn{i}" for i in range(2000, 2500)], 0.1, 0.1, seed=0)
    for k in parts:  # adding reactions never moves old ones
        assert parts[k] <= grown[k]


def test_smoke_build_splits_labels_and_resumes(t1x_dir, tmp_path):
    from horm.data.store import HessianStore
    from horm.datasets.build_t1x_xtb_large import build, ship

    rx = tmp_path / "rx"
    rx.mkdir()
    for r in LABELLED + TS_CANDIDATES:
        shutil.copy(t1x_dir / f"{r}.xyz", rx / f"{r}.xyz")
    kw = dict(n_reactions=2, n_ts_eval=1, workers=1, profile="smoke", exclude=set(), val_fraction=0.3,
              test_fraction=0.3)
    m = build(rx, tmp_path / "out", tmp_path / "work", **kw)
    reactions = m["reactions"]
    split_rxns = [r for s in ("train", "val", "test") for r in reactions[s]]
    assert sorted(split_rxns) == sorted(LABELLED)  # each labelled reaction in exactly one split
    assert len(reactions["ts_eval"]) == 1 and reactions["ts_eval"][0] in TS_CANDIDATES
    assert (tmp_path / "out" / "ts_reactions" / f"{reactions['ts_eval'][0]}.xyz").is_file()
    origins = set()
    n = 0
    for split in ("train", "val", "test"):
        with HessianStore.open(tmp_path / "out" / f"{split}.hstore") as st:
            rx_in = {s.rxn for s in st}
            assert rx_in <= set(reactions[split])
            origins |= {s.origin.split(":")[0] for s in st}
            assert all(s.hessian is not None and s.hessian.shape == (3 * s.natoms,) * 2 for s in st)
            n += len(st)
    assert n == sum(m["counts"][s]["samples"] for s in ("train", "val", "test")) > 0
    assert "neb" in origins and origins & {"ts", "tsopt", "irc"}  # NEB iterations and TS/IRC points
    for ts_rxn in reactions["ts_eval"]:
        for part in ("neb", "irc"):
            with HessianStore.open(tmp_path / "work" / f"labelled_{part}.hstore") as st:
                assert ts_rxn not in {s.rxn for s in st}  # never labelled
    again = build(rx, tmp_path / "out", tmp_path / "work", **kw)  # resume: nothing recomputed
    assert again["counts"] == m["counts"]
    assert all(r["labelled"] == 0 for r in again["label_runs"].values())
    shipped = ship(tmp_path / "out", tmp_path / "pkg", max_mb=0.03)  # room for one small split only
    assert shipped and len(shipped) < 3
    assert json.loads((tmp_path / "pkg" / "manifest.json").read_text())["shipped"]["splits"] == shipped
    readme = (tmp_path / "pkg" / "README.md").read_text()
    assert "xTB-level data, not DFT" in readme and "no: rebuild" in readme
    assert f"| `train.hstore` | training split | {m['counts']['train']['reactions']} |" in readme


def test_unshipped_large_split_names_the_rebuild_command():
    from horm.datasets import bundled_path, bundled_split_path
    from horm.errors import DataError

    assert bundled_split_path("ood").is_file()  # the small bundled set is unchanged
    try:
        root = bundled_path("t1x_xtb_large")
    except DataError as exc:
        assert "build_t1x_xtb_large --ship" in str(exc)
        return
    for split in ("train", "val", "test"):  # shipped: what is absent says how to rebuild it
        if not (root / f"{split}.hstore").is_file():
            with pytest.raises(DataError, match="build_t1x_xtb_large --ship"):
                bundled_split_path(split, "t1x_xtb_large")


@pytest.mark.parametrize("bad, named", [(dict(n_reactions=-3), "n_reactions"), (dict(n_reactions=0), "n_reactions"),
                                        (dict(n_ts_eval=-1), "n_ts_eval"), (dict(workers=0), "workers"),
                                        (dict(val_fraction=0.6, test_fraction=0.5), "fractions"),
                                        (dict(test_fraction=-0.1), "fractions")])
def test_bad_sizes_are_one_line_before_anything_is_written(t1x_dir, tmp_path, bad, named):
    """A negative count would slice the reaction list from its end (all but 3 reactions sampled into
    the work folder); bad fractions used to fail only after the labelling."""
    from horm.datasets.build_t1x_xtb_large import build

    rx = tmp_path / "rx"
    rx.mkdir()
    for r in LABELLED + TS_CANDIDATES:
        shutil.copy(t1x_dir / f"{r}.xyz", rx / f"{r}.xyz")
    kw = dict(n_reactions=2, n_ts_eval=1, workers=1, profile="smoke", exclude=set()) | bad
    with pytest.raises(SystemExit) as e:
        build(rx, tmp_path / "out", tmp_path / "work", **kw)
    msg = str(e.value)
    assert named in msg and "\n" not in msg
    assert not (tmp_path / "work").exists() and not (tmp_path / "out").exists()

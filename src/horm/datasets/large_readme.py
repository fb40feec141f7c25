"""README.md of the shipped part of the larger xTB set, written from its manifest by
:func:`horm.datasets.build_t1x_xtb_large.ship` (so the numbers in it are the build's own)."""

from __future__ import annotations

TEMPLATE = """# t1x_xtb_large — reactive Hessians at GFN2-xTB level for training TS-search models

**This is xTB-level data, not DFT.** Labels are GFN2-xTB energies, forces and finite-difference
Hessians, not the ωB97X/6-31G(d) of the HORM paper; numbers obtained on it are not comparable
with the paper's. It trains the shipped models of `horm.pretrained` (`horm model list`).

## Contents

| split | what | reactions | samples | atoms | failures | in this package |
|---|---|---|---|---|---|---|
{rows}
| `ts_reactions/*.xyz` | reactant/product pairs (xTB-relaxed) for TS evaluation only: never sampled, never labelled, in no split | {n_ts} | — | {ts_atoms} | — | yes |

{shipped_note}

Each `.hstore` is a horm store (same record layout as the bundled `t1x_xtb` set: `numbers`,
`pos` Å, `energy` eV total, `forces` eV/Å, `hessian` (3N, 3N) eV/Å², `rxn`, `origin`, `key`).
Origins: `reactant`, `product`, `neb:iter<k>:img<i>`, `neb:final:img<i>` (T1x-style NEB
iterations) and `ts`/`tsopt:last`, `irc:forward:<step>`, `irc:reverse:<step>` (RGD1-style TS
and IRC points); every labelled reaction has both kinds. `manifest.json` holds counts,
timings, every sampler and engine setting and the reaction list of each split.

## Provenance

- **Source reactions**: Transition1x validation reactions (Schreiner et al., *Sci. Data* 9,
  779 (2022)) as distributed in ReactBench's `ts1x` set (`../shared/data/t1x_val_reactions/`);
  only reactant and product geometries are read, no source file is shipped.
- **Reaction choice** (seed {seed}): the {n_excluded} reactions the bundled `t1x_xtb` set uses
  (its splits, its test reactions and all their candidates) are excluded. From a seeded
  permutation of the rest, the first reactions with 7–12 atoms are TS-evaluation candidates
  (reactant and product relaxed with xTB, LBFGS fmax 0.05 eV/Å; kept when both bond graphs
  survive and differ); the next {n_labelled} reactions with 5–16 atoms are sampled and labelled.
- **Splits**: by reaction, one seeded hash per reaction (`horm.data.splits.reaction_split`):
  test {test_fraction}, val {val_fraction}, the rest train.
- **Sampling** (`horm.sample`, profile `{profile}`): NEB {neb}; IRC {irc}.
- **Level of theory**: `{lot}` (tblite; settings pinned in `build_t1x_xtb.XTB_SETTINGS`).

## Regenerating

```bash
python -m horm.datasets.build_t1x_xtb_large --workers 2            # full build in ~/.cache/horm/t1x_xtb_large
python -m horm.datasets.build_t1x_xtb_large --workers 2 --ship     # then copy what fits (≤ 30 MB) here
```

Kill it at any time; the same command resumes (sampled reactions and labelled keys are skipped).
This build ({n_sessions} session(s), wall time summed): {seconds}.
"""


def render(man: dict) -> str:
    """The README text for a ``manifest.json`` (with its ``shipped`` entry) of the larger set."""
    counts, shipped = man["counts"], man.get("shipped", {}).get("splits", [])
    what = {"train": "training split", "val": "validation split (other reactions)",
            "test": "held-out labelled split (other reactions): Tables 1, 2, A.1"}
    rows = []
    for split in ("train", "val", "test"):
        c = counts[split]
        atoms = "–".join(map(str, c["atoms"])) if c.get("atoms") else "—"
        rows.append(f"| `{split}.hstore` | {what[split]} | {c['reactions']} | {c['samples']} | {atoms} | "
                    f"{c['failures']} | {'yes' if split in shipped else 'no: rebuild (below)'} |")
    not_shipped = [s for s in ("train", "val", "test") if s not in shipped]
    note = ("All splits are in this package." if not not_shipped else
            f"Not in this package (over the {man.get('shipped', {}).get('max_mb', 30)} MB budget): "
            + ", ".join(f"`{s}.hstore`" for s in not_shipped) + "; the command below rebuilds them.")
    labelled = sum(counts[s]["reactions"] for s in ("train", "val", "test"))
    return TEMPLATE.format(
        rows="\n".join(rows), n_ts=counts["ts_reactions"]["reactions"], ts_atoms="7–12", shipped_note=note,
        seed=man["seed"], n_excluded=man.get("excluded_reactions", "—"), n_labelled=labelled,
        test_fraction=man["test_fraction"], val_fraction=man["val_fraction"], profile=man["profile"],
        neb=_settings(man["neb_settings"]), irc=_settings(man["irc_settings"]),
        lot=man["engine"]["level_of_theory"],
        n_sessions=len(man.get("sessions", [])) or 1, seconds=", ".join(f"{k} {v:.0f} s" for k, v in man["seconds"].items()))


def _settings(d: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in d.items())

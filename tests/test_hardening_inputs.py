"""Geometry inputs that never end or overflow (issue 28, "Inputs"): every one is refused in one
line naming the file (and the frame and key where there is one), before any loop or read runs.

* an atom count is checked against the lines left in the file (xyz and extxyz);
* a file is read with a size cap, regular files only: FIFO, /dev/zero, a symlink to a device;
* folder walks skip symlink loops and devices, and the rest of the reactions still run;
* coordinates beyond ±1e4 Å or not finite are refused;
* a non-numeric label field names the file, the frame and the key.
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from pathlib import Path

import pytest

from horm.errors import DataError

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REACTION = SHARED / "data" / "t1x_val_reactions" / "rxn2587.xyz"
H2 = "H 0 0 0\nH 0 0 0.74\n"


def _one_line_error(call, *words):
    t0 = time.perf_counter()
    with pytest.raises(DataError) as ei:
        call()
    msg = str(ei.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg
    assert time.perf_counter() - t0 < 2.0
    return msg


def _cli(args):
    from typer.testing import CliRunner

    from horm.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def _reaction(tmp_path, name="r.xyz") -> Path:
    if not REACTION.exists():
        pytest.skip(f"shared reaction set not found at {REACTION}")
    return Path(shutil.copy(REACTION, tmp_path / name))


# --- atom counts ---------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix, comment", [(".extxyz", "Properties=species:S:1:pos:R:3 energy=1.0"),
                                             (".xyz", "energy=1.0"), (".xyz", "plain")])
def test_a_huge_atom_count_is_refused_at_once(tmp_path, suffix, comment):
    from horm.data.xyz import read_xyz

    p = tmp_path / f"big{suffix}"
    p.write_text(f"1000000000\n{comment}\n{H2}")
    _one_line_error(lambda: read_xyz(p), str(p), "frame 0", "1000000000 atoms")


def test_an_extxyz_count_beyond_the_lines_left_is_refused(tmp_path):
    from horm.data.xyz import read_xyz

    p = tmp_path / "short.extxyz"
    good = f"2\nProperties=species:S:1:pos:R:3 energy=1.0\n{H2}"
    p.write_text(good + "5000\nProperties=species:S:1:pos:R:3 energy=1.0\n" + H2)
    _one_line_error(lambda: read_xyz(p), "frame 1", "5000 atoms", "only 2 lines")
    p.write_text(good * 3)  # neighbour: a valid multi-frame file still reads
    assert len(read_xyz(p)) == 3


# --- what a file is ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["zero-link", "fifo", "null"])
@pytest.mark.parametrize("suffix", [".xyz", ".extxyz", ".traj"])
def test_devices_and_fifos_are_refused_before_reading(tmp_path, kind, suffix):
    from horm.data.xyz import read_xyz

    p = tmp_path / f"in{suffix}"
    if kind == "fifo":
        os.mkfifo(p)
        what = "FIFO"
    else:
        p.symlink_to("/dev/zero" if kind == "zero-link" else "/dev/null")
        what = "character device"
    _one_line_error(lambda: read_xyz(p), str(p), what, "not a regular file")


def test_ts_run_on_a_symlink_to_dev_zero_is_one_line(tmp_path):
    link = tmp_path / "zero.xyz"
    link.symlink_to("/dev/zero")
    fifo = tmp_path / "fifo.xyz"
    os.mkfifo(fifo)
    for p in (link, fifo):
        res = _cli(["ts", "run", p, "--potential", "xtb", "--out", tmp_path / "out"])
        assert res.exit_code == 1, res.output
        assert "not a regular file" in res.output and "Traceback" not in res.output


def test_a_file_over_the_size_cap_is_refused(tmp_path, monkeypatch):
    import horm.safe_io
    from horm.data.xyz import read_xyz

    p = tmp_path / "r.xyz"
    p.write_text("2\nc\n" + H2)
    assert len(read_xyz(p)) == 1
    monkeypatch.setattr(horm.safe_io, "MAX_INPUT_BYTES", 8)
    _one_line_error(lambda: read_xyz(p), str(p), "input limit")


def test_a_symlink_loop_is_one_line(tmp_path):
    from horm.data.xyz import read_xyz

    p = tmp_path / "loop.xyz"
    p.symlink_to(p)
    _one_line_error(lambda: read_xyz(p), str(p), "symlink loop")


# --- folder walks --------------------------------------------------------------------------------

def _messy_folder(tmp_path) -> Path:
    d = tmp_path / "rxns"
    d.mkdir()
    _reaction(d, "good.xyz")
    (d / "loop.xyz").symlink_to("loop.xyz")
    (d / "a.xyz").symlink_to("b.xyz")
    (d / "b.xyz").symlink_to("a.xyz")
    (d / "zero.xyz").symlink_to("/dev/zero")
    (d / "sub.xyz").symlink_to(".")
    return d


def test_benchmark_folder_walk_skips_loops_and_devices(tmp_path):
    from horm.ts.benchmark import select_reactions

    d = _messy_folder(tmp_path)
    told = []
    files = select_reactions(d, on_skip=lambda p, why: told.append((p.name, why)))
    assert [f.name for f in files] == ["good.xyz"]
    assert sorted(n for n, _ in told) == ["a.xyz", "b.xyz", "loop.xyz", "sub.xyz", "zero.xyz"]
    assert dict(told)["loop.xyz"] == "a symlink loop"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert select_reactions(d) == files
    assert any("symlink loop" in str(w.message) for w in caught)


def test_label_and_sample_folder_walks_skip_loops(tmp_path):
    from horm.label.items import open_items
    from horm.sample.run import reaction_files

    d = _messy_folder(tmp_path)
    n, items = open_items(d)
    assert n == 2 and {s.rxn for s in items()} == {"good"}
    assert [p.name for p in reaction_files([d])] == ["good.xyz"]


def test_benchmark_payload_does_not_resolve_a_loop(tmp_path, monkeypatch):
    """A loop handed to run_benchmark itself becomes that reaction's error record, not a traceback."""
    import horm.ts.benchmark as bm

    seen = {}

    def fake_run_jobs(pending, job, sink, opts, total, title):
        seen["pending"] = pending
        for rxn, payload in pending:
            sink.land(bm._failure(rxn, "error", 0.0, "stub"))

    monkeypatch.setattr(bm, "run_jobs", fake_run_jobs)
    loop = tmp_path / "loop.xyz"
    loop.symlink_to(loop)
    good = _reaction(tmp_path, "good.xyz")
    recs = bm.run_benchmark([loop, good], "xtb", tmp_path / "out")
    assert sorted(r["rxn"] for r in recs) == ["good", "loop"]
    assert [rxn for rxn, _ in seen["pending"]] == ["loop", "good"]


# --- coordinates ---------------------------------------------------------------------------------

@pytest.mark.parametrize("value, words", [("1e300", ["1e+300", "beyond the bound"]),
                                          ("-2e4", ["-2e+04", "beyond the bound"]),
                                          ("inf", ["NaN or inf"]), ("nan", ["NaN or inf"])])
@pytest.mark.parametrize("suffix, comment", [(".xyz", "plain"), (".extxyz", "Properties=species:S:1:pos:R:3")])
def test_coordinates_beyond_the_bound_are_refused(tmp_path, value, words, suffix, comment):
    from horm.data.xyz import read_xyz

    p = tmp_path / f"far{suffix}"
    p.write_text(f"2\n{comment}\nH {value} 0 0\nH 0 0 0.74\n")
    _one_line_error(lambda: read_xyz(p), str(p), "frame 0", "atom 0", *words)
    p.write_text(f"2\n{comment}\nH 9999 0 0\nH 0 0 0.74\n")  # inside the bound: fine
    assert read_xyz(p)[0].pos[0, 0] == 9999


def test_ts_run_with_a_coordinate_of_1e300_is_one_line(tmp_path):
    src = _reaction(tmp_path)
    lines = src.read_text().splitlines()
    parts = lines[2].split()
    lines[2] = " ".join([parts[0], "1e300", *parts[2:]])
    bad = tmp_path / "bad.xyz"
    bad.write_text("\n".join(lines) + "\n")
    res = _cli(["ts", "run", bad, "--potential", "xtb", "--out", tmp_path / "out"])
    assert res.exit_code == 1, res.output
    assert "beyond the bound" in res.output and "Traceback" not in res.output


# --- non-numeric fields --------------------------------------------------------------------------

@pytest.mark.parametrize("field, key", [("hessian=abc", "hessian"), ("energy=abc", "energy"),
                                        ("energy=1.0 hessian=\"1 2 x\"", "hessian")])
def test_a_non_numeric_field_names_file_frame_and_key(tmp_path, field, key):
    from horm.data.xyz import read_xyz

    p = tmp_path / "lab.extxyz"
    good = f"2\nProperties=species:S:1:pos:R:3 energy=1.0\n{H2}"
    p.write_text(good + f"2\nProperties=species:S:1:pos:R:3 {field}\n{H2}")
    _one_line_error(lambda: read_xyz(p), str(p), "frame 1", f"{key}=", "not numeric")


def test_a_non_numeric_named_key_is_one_line(tmp_path):
    from horm.data.formats import LabelKeys
    from horm.data.xyz import read_xyz

    p = tmp_path / "ref.extxyz"
    p.write_text(f"2\nProperties=species:S:1:pos:R:3 REF_energy=abc\n{H2}")
    _one_line_error(lambda: read_xyz(p, keys=LabelKeys(energy="REF_energy")), str(p), "frame 0",
                    "REF_energy=", "not numeric")
    res = _cli(["data", "info", p])
    assert res.exit_code == 0, res.output  # without the key, REF_energy is only an info field

"""`horm learn` settings: bad values are one line and exit status 2, before any work; a run
folder refuses to resume with other settings; report.md draws both strategies."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from horm.cli import app
from horm.errors import UsageError
from horm.learn import LearnSettings


@pytest.fixture()
def dirs(tmp_path):
    (tmp_path / "rx").mkdir()
    for m in ("a.pt", "b.pt"):
        (tmp_path / m).write_bytes(b"")
    return tmp_path


def _s(d, **kw):
    base = dict(reactions=str(d / "rx"), models=(str(d / "a.pt"), str(d / "b.pt")), out=str(d / "out"))
    return LearnSettings(**{**base, **kw})


@pytest.mark.parametrize("kw, words", [
    ({"strategy": "greedy"}, "strategy 'greedy' is not valid; choose one of committee, random"),
    ({"score": "entropy"}, "score 'entropy' is not valid"),
    ({"budget": 0}, "budget must be an integer >= 1"),
    ({"min_rmsd": float("nan")}, "min_rmsd must be a finite number"),
    ({"models": ("a.pt",)}, "at least 2 --models"),
    ({"committee": "head", "score": "forces"}, "score 'forces' needs committee 'models'"),
    ({"search_models": 3}, "search_models=3 but only 2 models"),
    ({"eval_models": 3}, "eval_models=3 but only 2 models"),
    ({"dtype": "float16"}, "dtype 'float16' is not valid; choose one of float32, float64"),
    ({"ts_settings": {"tsopt": {"max_stepz": 3}}}, "unknown setting(s) max_stepz"),
    ({"seed_store": "/nonexistent.hstore"}, "seed_store /nonexistent.hstore: no such file"),
    ({"strategy": "window"}, "strategy 'window' needs both trust_lo and trust_hi"),
    ({"strategy": "window", "trust_lo": 2.0, "trust_hi": 1.0}, "0 <= trust_lo <= trust_hi"),
    ({"strategy": "window", "trust_lo": 0.0, "trust_hi": float("inf")}, "0 <= trust_lo <= trust_hi"),
    ({"trust_lo": 0.5, "trust_hi": 1.0}, "belong to strategy 'window', not 'committee'"),
])
def test_bad_settings_are_refused_with_one_line(dirs, kw, words):
    if "models" in kw:
        kw["models"] = tuple(str(dirs / m) for m in kw["models"])
    with pytest.raises(UsageError) as e:
        _s(dirs, **kw)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_the_cli_says_one_line_and_exits_2(dirs):
    res = CliRunner().invoke(app, ["learn", str(dirs / "rx"), "--models", str(dirs / "a.pt"), str(dirs / "b.pt"),
                                   "--out", str(dirs / "out"), "--strategy", "greedy"])
    assert res.exit_code == 2 and "strategy 'greedy' is not valid" in res.output
    assert not (dirs / "out" / "state.json").exists()


def test_shipped_model_names_are_committee_members(dirs):
    from horm.pretrained import available, model_path

    names = available()[:2]
    if len(names) < 2:
        pytest.skip("fewer than 2 shipped models are installed")
    s = _s(dirs, models=tuple(names))
    assert s.models == tuple(str(model_path(n).resolve()) for n in names)
    with pytest.raises(UsageError, match="--models t1x-xtb-nope: no such file or folder"):
        _s(dirs, models=("t1x-xtb-nope", names[0]))


def test_a_run_folder_refuses_other_settings_but_takes_more_rounds(dirs):
    saved = _s(dirs, budget=10).to_dict()
    _s(dirs, budget=10, rounds=4).check_resume(saved)
    with pytest.raises(UsageError, match="other settings \\(budget\\)"):
        _s(dirs, budget=20).check_resume(saved)


def test_report_draws_both_strategies(tmp_path):
    from horm.learn.report import write_report

    for name, strategy, intended in (("cm", "committee", [1, 4, 6]), ("rnd", "random", [1, 2, 3])):
        for r, n in enumerate(intended):
            d = tmp_path / name / f"round_{r:02d}"
            d.mkdir(parents=True)
            rec = {"round": r, "strategy": strategy, "labels": 10 * r, "seconds": 5.0,
                   "metrics": {"ts": {"intended": n, "intended_reference": 7}}}
            if strategy == "random" and r == 2:  # two evaluated models: the curve is their mean
                rec["metrics"]["ts"].update(intended_mean=3.5, members=[{"intended": 3}, {"intended": 4}])
            (d / "record.json").write_text(json.dumps(rec))
    text = write_report(tmp_path / "cm", tmp_path / "rnd").read_text()
    assert "### committee (cm)" in text and "### random (rnd)" in text
    assert "| 2 | 20 | 6 | 7 |" in text and "| 2 | 20 | 3.5 | 7 |" in text
    assert "At round 2 (20 and 20 labels): committee (cm) 6 intended, random (rnd) 3.5; ratio 1.71×." in text
    assert (tmp_path / "cm" / "learning_curve.png").stat().st_size > 1000


def test_comparison_line_uses_the_last_round_both_runs_finished():
    from horm.learn.report import comparison_line

    def recs(counts):
        return [{"round": r, "labels": 50 * r, "metrics": {"ts": {"intended": n}}} for r, n in enumerate(counts)]

    line = comparison_line({"committee": recs([0, 1, 2, 5]), "random": recs([0, 0, 2])})
    assert line == "At round 2 (100 and 100 labels): committee 2 intended, random 2; ratio 1.00×."
    assert "∞" in comparison_line({"a": recs([0, 2]), "b": recs([0, 0])})
    assert "equal, none found" in comparison_line({"a": recs([0]), "b": recs([0])})
    assert comparison_line({"a": recs([1])}) is None


def test_paired_line_names_the_reactions_each_run_alone_solved_and_the_round_to_round_flips(tmp_path):
    from horm.learn.report import paired_line

    def results(run, r, intended):
        d = tmp_path / run / f"round_{r:02d}" / "heldout_ts"
        d.mkdir(parents=True)
        rows = [{"rxn": n, "intended": n in intended} for n in ("rxn1", "rxn2", "rxn3", "rxn4")]
        (d / "results.jsonl").write_text("\n".join(json.dumps(x) for x in rows) + "\n{broken\n")

    results("a", 1, {"rxn1"})
    results("a", 2, {"rxn1", "rxn2", "rxn3"})
    results("b", 2, {"rxn1", "rxn4"})
    line = paired_line({"window": tmp_path / "a", "random": tmp_path / "b"}, 2)
    assert line == ("Reaction by reaction at round 2: both 1; only window 2 (rxn2, rxn3); only random 1 (rxn4). "
                    "Reactions that changed outcome since round 1: window 2.")
    assert paired_line({"window": tmp_path / "a", "random": tmp_path / "b"}, 3) is None

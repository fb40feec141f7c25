"""Small CLI points: --version, short -o on every verb that writes, the --n alias of
ts benchmark, and a quiet `horm train` (no Lightning tips, banners, deprecations, "Epoch 0/-2")."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import horm
from horm.cli import app

BUNDLED = Path(__file__).resolve().parents[1] / "src" / "horm" / "datasets" / "t1x_xtb"


def test_version():
    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"horm {horm.__version__}"


@pytest.mark.parametrize("verb", [["data", "stats"], ["data", "split"], ["data", "export"], ["label"], ["sample"],
                                  ["train"], ["evaluate"], ["ts", "run"], ["ts", "benchmark"], ["demo"]])
def test_every_writing_verb_takes_short_o(verb):
    res = CliRunner().invoke(app, [*verb, "--help"], env={"COLUMNS": "200"})
    text = re.sub(r"\x1b\[[0-9;]*m", "", res.output)
    if verb == ["data", "export"]:  # writes to its DST argument
        assert "DST" in text
        return
    assert re.search(r"--out\s*,?\s*-o|-o\s*,?\s*--out", text), text


def test_benchmark_n_reactions_and_hidden_n_alias():
    res = CliRunner().invoke(app, ["ts", "benchmark", "--help"], env={"COLUMNS": "200"})
    text = re.sub(r"\x1b\[[0-9;]*m", "", res.output)
    assert "--n-reactions" in text and not re.search(r"--n\s", text)


def test_train_output_is_quiet(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(horm.__file__).parents[1]),
           "COLUMNS": "120"}
    cmd = [sys.executable, "-W", "default", "-m", "horm.cli", "train", "model.overrides.hidden_channels=8",
           "model.overrides.num_layers=1", "trainer.max_steps=2", "trainer.batch_size=4", "data.max_train=8",
           "data.max_val=4", "--data", str(BUNDLED / "val.hstore"), "-o", str(tmp_path / "run")]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "model written to" in out
    for noise in ("Tip", "litlogger", "GPU available", "TPU available", "deprecated", "Warning", "Epoch 0/-2",
                  "v_num", "logging interval", "`Trainer.fit` stopped"):
        assert noise not in out, (noise, out)

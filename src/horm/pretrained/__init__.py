"""Trained models shipped inside the package, by name.

``t1x-xtb-leftnet-ef``, ``t1x-xtb-leftnet-efh``, ``t1x-xtb-leftnet-df-efh`` and
``t1x-xtb-hessian-head`` are GFN2-xTB-level surrogates trained on Transition1x geometries
(the larger xTB set, :mod:`horm.datasets.build_t1x_xtb_large`), not DFT models: see
``README.md`` here. ``manifest.json`` holds, per name, the model file, its architecture,
loss, training config and, once trained, its file hash, steps and metrics.

Every verb that takes a model accepts these names (``--potential NAME``, ``horm evaluate
NAME``, ``HormCalculator``/``load_potential(NAME)``, ``load_model(NAME)``): the model-file
resolver maps a name to its file here. A name whose file is absent from this installation
raises :class:`horm.errors.DataError` with one line saying that the model is not shipped in
this version. ``python -m horm.pretrained install NAME RUN_DIR`` copies a trained run's
``model.pt`` in and records its hash (what ``benchmarks/ts_models.py`` does at the end).
``HORM_PRETRAINED_DIR`` points the registry at another folder holding a ``manifest.json`` and
the model files (a shared install; the tests use it).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

from horm.errors import DataError, UsageError

HERE = Path(__file__).resolve().parent
ENV = "HORM_PRETRAINED_DIR"
NAMES = ("t1x-xtb-leftnet-ef", "t1x-xtb-leftnet-efh", "t1x-xtb-leftnet-df-efh", "t1x-xtb-hessian-head")


def folder() -> Path:
    """Where the shipped models live: ``$HORM_PRETRAINED_DIR`` if set, else this package folder."""
    return Path(os.environ.get(ENV) or HERE)


def manifest() -> dict:
    """The shipped-model manifest (``{"models": {name: {...}}}``), checked for the known names."""
    path = folder() / "manifest.json"
    try:
        man = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(str(path), f"unreadable shipped-model manifest ({exc})") from None
    models = man.get("models") if isinstance(man, dict) else None
    if not isinstance(models, dict) or set(models) != set(NAMES):
        raise DataError(str(path), f"manifest must list exactly the models {', '.join(NAMES)}")
    return man


def is_name(spec) -> bool:
    """True when ``spec`` is a shipped-model name (whether or not its file is installed)."""
    return isinstance(spec, (str, os.PathLike)) and str(spec) in NAMES


def model_path(name: str) -> Path:
    """The installed file of a shipped model; DataError (one line) when it is not shipped."""
    if name not in NAMES:
        raise UsageError(f"unknown shipped model {name!r}; valid: {', '.join(NAMES)}")
    entry = manifest()["models"][name]
    path = folder() / entry["file"]
    if not path.is_file():
        raise DataError(name, "model is not shipped in this version of horm (train it: "
                              "python benchmarks/ts_models.py; see horm/pretrained/README.md)")
    _check_against_manifest(name, path, entry)
    return path


_VERIFIED: set[tuple[str, int, int, str]] = set()  # (path, size, mtime_ns, sha256) checked in this process


def _check_against_manifest(name: str, path: Path, entry: dict) -> None:
    """The installed file is the one the manifest lists: its size, then its sha256 (once per process
    while the file is unchanged). An entry without a hash (never installed) is not checked."""
    want_sha, want_bytes = entry.get("sha256"), entry.get("bytes")
    st = path.stat()
    if want_bytes is not None and st.st_size != want_bytes:
        raise DataError(str(path), f"shipped model {name} is {st.st_size:,} bytes, the manifest says "
                                   f"{want_bytes:,}: the file was changed or swapped; reinstall horm")
    if not want_sha:
        return
    key = (str(path), st.st_size, st.st_mtime_ns, str(want_sha))
    if key in _VERIFIED:
        return
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    if h.hexdigest() != want_sha:
        raise DataError(str(path), f"shipped model {name} has sha256 {h.hexdigest()[:16]}…, the manifest says "
                                   f"{str(want_sha)[:16]}…: the file was changed or swapped; reinstall horm")
    _VERIFIED.add(key)


def resolve(spec):
    """A shipped name → its file path; anything else is returned unchanged."""
    return model_path(str(spec)) if is_name(spec) and not Path(spec).exists() else spec


def available() -> list[str]:
    """Names whose model file is installed."""
    man = manifest()["models"]
    return [n for n in NAMES if (folder() / man[n]["file"]).is_file()]


def list_lines() -> list[str]:
    """One line per shipped name, name first: ``NAME  shipped|not shipped  architecture  loss``."""
    man, have = manifest()["models"], set(available())
    width = max(map(len, NAMES))
    return [f"{n:{width}s}  {'shipped' if n in have else 'not shipped':11s}  {man[n]['architecture']:12s}  "
            f"{man[n]['loss']}" for n in NAMES]


def training_chain(run_dir: str | os.PathLike, limit: int = 16) -> list[dict]:
    """The runs behind ``RUN_DIR/model.pt``, first run first: each ``{"run", "steps", "wall_s"}``,
    following ``run.json``'s ``init_from`` (a warm start from another run's ``model.pt`` or run
    folder)."""
    chain, d = [], Path(run_dir)
    while d is not None and len(chain) < limit:
        p = d / "run.json"
        try:
            run = json.loads(p.read_text()) if p.is_file() else {}
        except (OSError, ValueError):  # unreadable: its steps and time are unknown (None), not guessed
            run = {}
        chain.append({"run": str(d), "steps": run.get("global_step"), "wall_s": run.get("wall_s"),
                      "n_train": run.get("n_train")})
        d = _warm_start_run(run.get("init_from"))
    return chain[::-1]


def _warm_start_run(init_from: str | None) -> Path | None:
    """The run folder a warm start came from: that of its ``model.pt``, or the run folder it names;
    None for anything else (no warm start, a checkpoint file)."""
    if not init_from:
        return None
    p = Path(init_from)
    if p.name == "model.pt":
        return p.parent
    return p if (p / "run.json").is_file() else None


def install(name: str, run_dir: str | os.PathLike, metrics: dict | None = None) -> Path:
    """Copy ``RUN_DIR/model.pt`` in as ``name`` and record hash, size, steps and wall time (summed
    over a warm-start chain, :func:`training_chain`) and ``metrics``."""
    if name not in NAMES:
        raise UsageError(f"unknown shipped model {name!r}; valid: {', '.join(NAMES)}")
    src = Path(run_dir) / "model.pt"
    if not src.is_file():
        raise DataError(str(src), "no model.pt (has the training finished?)")
    man = manifest()
    entry = man["models"][name]
    dst = folder() / entry["file"]
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
    chain = training_chain(run_dir)
    total = (lambda k: sum(c[k] for c in chain) if all(c[k] is not None for c in chain) else None)
    entry.update(sha256=hashlib.sha256(dst.read_bytes()).hexdigest(), bytes=dst.stat().st_size,
                 global_step=total("steps"), wall_s=total("wall_s"), n_train=chain[-1]["n_train"])
    if len(chain) > 1:
        entry["training_runs"] = [{k: c[k] for k in ("steps", "wall_s")} for c in chain]
    else:
        entry.pop("training_runs", None)
    if metrics:
        entry["metrics"] = metrics
    (folder() / "manifest.json").write_text(json.dumps(man, indent=1) + "\n")
    return dst


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 3 and argv[0] == "install":
        print(install(argv[1], argv[2]))
    elif argv == ["list"]:
        print("\n".join(list_lines()))
    else:
        raise SystemExit("usage: python -m horm.pretrained list | install NAME RUN_DIR")

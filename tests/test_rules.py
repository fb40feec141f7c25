"""Architecture rules that must keep holding (checked on the source, with ``ast``).

- no file under ``src/`` over 400 lines, no function over 80 lines;
- the library never imports the CLI; data knows no model; derivatives are model-agnostic;
- no module imports the package face ``horm/__init__``; calculators and models import no layer above;
- none of our own models imports another model's module (shared blocks: ``models/layers.py``);
- every registered model runs the one ``Potential.forward`` and declares its Hessian;
- ``horm.cli`` holds no loops over models or reactions (a verb parses, builds settings and
  calls one library function).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "horm"
FILES = sorted(SRC.rglob("*.py"))
OWN_MODELS = ("leftnet", "alphanet", "equiformer_v2", "hessian_head")


def _tree(p: Path) -> ast.Module:
    return ast.parse(p.read_text(), str(p))


def _imports(p: Path) -> set[str]:
    out = set()
    for node in ast.walk(_tree(p)):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


def _rel(p: Path) -> str:
    return str(p.relative_to(SRC.parent))


def test_files_and_functions_are_short():
    long_files = [f"{_rel(p)}: {n} lines" for p in FILES if (n := len(p.read_text().splitlines())) > 400]
    long_funcs = []
    for p in FILES:
        for node in ast.walk(_tree(p)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 80:
                    long_funcs.append(f"{_rel(p)}:{node.lineno} {node.name}: {n} lines")
    assert not long_files and not long_funcs, "\n".join(long_files + long_funcs)


@pytest.mark.parametrize("part, forbidden", [
    ("", ("horm.cli",)),  # the library never imports the CLI
    ("data", ("horm.models", "horm.train", "horm.evaluate", "horm.ts")),  # data knows no model
    ("hessian", ("horm.models", "horm.train")),  # derivatives are model-agnostic
    ("jobs", ("horm.models", "horm.label", "horm.ts", "horm.sample", "horm.train")),  # the runner knows no job
    # calculators stand below every search, sampler and learner (DESIGN.md's import floors)
    ("calculators", ("horm.ts", "horm.sample", "horm.learn", "horm.train", "horm.evaluate", "horm.interop")),
    ("models", ("horm.calculators", "horm.ts", "horm.sample", "horm.learn", "horm.train", "horm.label")),
])
def test_layering(part, forbidden):
    files = [p for p in FILES if (SRC / part) in p.parents and "cli" not in p.relative_to(SRC).parts[:1]]
    bad = [f"{_rel(p)} imports {m}" for p in files for m in sorted(_imports(p))
           if any(m == f or m.startswith(f + ".") for f in forbidden)]
    assert files and not bad, "\n".join(bad)


_APPS = ("horm.ts", "horm.sample", "horm.learn", "horm.demo", "horm.cli")


@pytest.mark.parametrize("part", ["data", "hessian", "models", "calculators"])
def test_lower_floors_import_no_application(part):
    """DESIGN.md's floors: data, derivatives, models and calculators sit below every application
    (the TS search, the sampler, the learner, the demo and the CLI)."""
    files = [p for p in FILES if (SRC / part) in p.parents]
    bad = [f"{_rel(p)} imports {m}" for p in files for m in sorted(_imports(p))
           if any(m == a or m.startswith(a + ".") for a in _APPS)]
    assert files and not bad, "\n".join(bad)


def _module_name(p: Path) -> str:
    parts = list(p.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_the_import_graph_has_no_circles():
    """Every import, at the top of a module or inside a function, is an arrow between modules;
    a circle means two modules cannot be read (or changed) one without the other. Registries
    that must name what sits above them use lazy ``"module:Class"`` tables instead."""
    import networkx as nx

    modules = {_module_name(p): p for p in FILES}
    graph = nx.DiGraph()
    for name, p in modules.items():
        for target in _imports(p):
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target not in (name, "horm"):
                graph.add_edge(name, target)
    circles = [" -> ".join(c + c[:1]) for c in nx.simple_cycles(graph)]
    assert not circles, "\n".join(sorted(circles)[:20])


def test_the_model_table_names_the_classes_that_register():
    """Each built-in name of the lazy registry imports to a class registered under that name,
    and ``models/base.py`` imports no architecture."""
    from horm.models.registry import BUILTIN, model_class

    for name, where in BUILTIN.items():
        cls = model_class(name)
        assert cls.name == name and f"{cls.__module__}:{cls.__qualname__}" == where, name
    base = _imports(SRC / "models" / "base.py")
    assert not [m for m in base if m.startswith("horm.models.") and m.split(".")[2] not in ("graph", "nn")], base


def test_no_library_module_imports_the_package_face():
    """``horm/__init__`` names the public API (and imports it lazily); a module that imported it
    would depend on every layer. The version lives in the leaf ``horm._version``."""
    bad = [f"{_rel(p)} imports horm" for p in FILES if p != SRC / "__init__.py"
           for m in _imports(p) if m == "horm"]
    assert not bad, "\n".join(bad)


def test_no_model_imports_another_models_module():
    bad = []
    for name in OWN_MODELS:
        p = SRC / "models" / f"{name}.py"
        others = {f"horm.models.{o}" for o in OWN_MODELS if o != name}
        bad += [f"{name}.py imports {m}" for m in _imports(p) if any(m == o or m.startswith(o + ".") for o in others)]
    assert not bad, "\n".join(bad)


# names of collections of models, reactions or their results (what a loop in a verb would walk)
_COLLECTIONS = {"models", "model_paths", "reactions", "reaction_files", "files", "paths", "runs", "records",
                "sample_reactions", "select_reactions", "zip"}


def test_cli_has_no_loops_over_models_or_reactions():
    bad = []
    for p in sorted((SRC / "cli").glob("*.py")):
        for node in ast.walk(_tree(p)):
            if isinstance(node, (ast.For, ast.comprehension)):
                names = {n.id for n in ast.walk(node.iter) if isinstance(n, ast.Name)}
                if names & _COLLECTIONS:
                    bad.append(f"{_rel(p)}: loops over {ast.unparse(node.iter)}")
    assert not bad, "\n".join(bad)


def test_every_registered_model_uses_the_one_forward_and_declares_its_hessian():
    """The Potential protocol has one owner: no registered model overrides ``forward``; each declares
    ``forces_mode`` and ``hessian_mode``, and a direct Hessian gives ``_predict_hessian``."""
    from horm.models.base import Potential
    from horm.models.registry import model_class, list_models

    for name in list_models():
        cls = model_class(name)
        assert cls.forward is Potential.forward, f"{name} overrides forward"
        assert cls.forces_mode in ("autograd", "direct"), name
        if cls.hessian_mode == "direct" or isinstance(cls.__dict__.get("hessian_mode"), property):
            assert cls._predict_hessian is not Potential._predict_hessian, f"{name} has no _predict_hessian"

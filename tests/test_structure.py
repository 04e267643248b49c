"""The engine's shape (issue 14), enforced on the source tree.

* No import cycle anywhere under capview/ (imports inside functions count: moving an
  import into a function to dodge a cycle is still a cycle).
* No literal ``.capview/`` path in capview/engine outside the layout module.
* No engine module imports another operation's module (shared pieces live in shared
  modules), and deploy, rollback, restart and migrate reach the host's switch through
  the one ``switching.switch``.
* No module under capview/ over 600 lines.
* Functions named ``*_script`` (a remote script's builder) are defined only under
  capview/engine/scripts/.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from test_layers import PKG, imported_modules, module_name, py_files

ENGINE = PKG / "engine"
# The operations: modules a front calls; they may import shared modules, never each other.
OPERATIONS = {"deploy", "rollback", "restart", "prune", "status", "migrate", "ops", "inspect", "check", "traefik",
              "verify"}
# the layout module names every path of the host layout (HostPaths and its constants)
LITERAL_OK = {"layout.py"}
SCRIPTS = ENGINE / "scripts"
MAX_LINES = 600


def type_checking_lines(path: Path) -> set[int]:
    """Lines inside ``if TYPE_CHECKING:`` blocks: annotations only, never imported at run time."""
    lines: set[int] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def internal_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in py_files("")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        skip = type_checking_lines(path)
        for line, target in imported_modules(path):
            if target in modules and target != mod and line not in skip:
                graph[mod].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_under_capview():
    found = cycles(internal_graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_engine_has_no_cycle_at_all():
    found = [c for c in cycles(internal_graph()) if any(m.startswith(("capview.engine", "capview.remote")) for m in c)]
    assert not found, found


def test_the_cycle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def string_constants(path: Path) -> list[tuple[int, str]]:
    """Every string literal in code (f-string parts included), docstrings left out."""
    tree = ast.parse(path.read_text())
    docs = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = getattr(node, "body", [])
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docs.add(id(body[0].value))
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def test_no_literal_capview_path_outside_the_layout_module():
    bad = [f"{p.relative_to(PKG.parent)}:{line}: {text[:80]!r}"
           for p in sorted(ENGINE.rglob("*.py")) if p.name not in LITERAL_OK
           for line, text in string_constants(p) if ".capview/" in text]
    assert not bad, "name the path in layout.py (HostPaths / its constants) instead:\n" + "\n".join(bad)


def test_the_literal_check_sees_fstrings(tmp_path):
    f = tmp_path / "m.py"
    f.write_text('"""doc .capview/x is fine"""\nx = f"{a}/.capview/lock"\n')
    assert [t for _, t in string_constants(f) if ".capview/" in t] == ["/.capview/lock"]


def test_no_operation_imports_another_operation():
    graph = internal_graph()
    ops = {f"capview.engine.{m}" for m in OPERATIONS}
    bad = [f"{m} imports {t}" for m in sorted(ops & graph.keys()) for t in sorted(graph[m] & ops)]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("op", ["deploy", "rollback", "restart", "migrate"])
def test_every_switch_goes_through_the_one_switching_function(op):
    """The module calls ``switching.switch`` and builds no switch of its own: it never
    imports the switch step builders, only the plan type and (for dry runs) the whole
    transaction's text."""
    path = ENGINE / f"{op}.py"
    tree = ast.parse(path.read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
             and n.func.attr in ENTRY and isinstance(n.func.value, ast.Name) and n.func.value.id == "switching"]
    assert calls, f"{op}.py does not call switching.switch"
    allowed = {"SwitchPlan", "transaction"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in ("capview.engine.scripts.switch",
                                                                 "capview.engine.scripts.service"):
            names = {a.name for a in node.names}
            assert names <= allowed | ({"health_function"} if op == "deploy" else set()), (op, names)


ENTRY = ("switch", "switch_and_conclude")


def test_the_switching_entry_points_are_one_function():
    """switch_and_conclude is switch() plus the wording of its result: it calls switch."""
    tree = ast.parse((ENGINE / "switching.py").read_text())
    fn = next(n for n in ast.walk(tree) if isinstance(n, ast.AsyncFunctionDef) and n.name == "switch_and_conclude")
    assert any(isinstance(c, ast.Call) and isinstance(c.func, ast.Name) and c.func.id == "switch" for c in ast.walk(fn))


def test_no_module_under_capview_is_over_600_lines():
    big = {str(p.relative_to(PKG)): n for p in PKG.rglob("*.py")
           if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, big


def script_builders(path: Path) -> list[tuple[int, str]]:
    """Module-level functions named ``*_script``, with their lines."""
    tree = ast.parse(path.read_text())
    return [(n.lineno, n.name) for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.name.endswith("_script")]


def test_script_builders_live_in_engine_scripts():
    """The rule that keeps every remote script under engine/scripts/ (and so under
    tests/test_golden.py's eye): a builder is named ``*_script`` and is defined there,
    nowhere else under capview/ (fronts, engine flows, traefik). Elsewhere a builder is
    imported from engine/scripts/ (a re-export is fine: it defines nothing).

    Grep-able: ``grep -rn "^def [a-z_]*_script(" capview | grep -v engine/scripts/`` must
    print nothing. Checked: module-level ``def``s, the way builders are
    written. Methods named ``*_script`` (``HostLock.acquire_script``, ``HostDeploy.state_script``)
    are a flow object's adapters binding its state to a builder from engine/scripts/, and
    are left alone."""
    bad = [f"{p.relative_to(PKG.parent)}:{line}: def {name}"
           for p in sorted(PKG.rglob("*.py"))
           if SCRIPTS not in p.parents
           for line, name in script_builders(p)]
    assert not bad, "move the builder into a module under capview/engine/scripts/ (with a golden case):\n" + "\n".join(bad)


def test_the_builder_rule_sees_a_new_builder(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def cleanup_script(p):\n    return 'rm -rf x'\n\nclass A:\n    def state_script(self):\n        return ''\n")
    assert script_builders(f) == [(1, "cleanup_script")]

"""DESIGN.md's layer rules, enforced on the source tree.

* capview/engine and capview/remote never import textual or rich -- anywhere: top-level
  imports, ``from x import y``, relative imports, imports inside functions or
  ``if TYPE_CHECKING`` blocks, and ``importlib.import_module("...")``/``__import__`` calls
  with a literal name.
* The fronts (capview/cli, capview/tui) never build shell commands: no ``shlex.quote``
  (or ``shlex.join``) and no ``sh -c`` in their source.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "capview"
UI_LIBS = ("textual", "rich")


def py_files(*subdirs: str) -> list[Path]:
    files: list[Path] = []
    for sub in subdirs:
        files += sorted((PKG / sub).rglob("*.py"))
    return files


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolve_relative(path: Path, level: int, module: str | None) -> str:
    pkg = module_name(path).split(".")
    if path.name != "__init__.py":
        pkg = pkg[:-1]
    base = pkg[: len(pkg) - (level - 1)] if level > 1 else pkg
    return ".".join(base + ([module] if module else []))


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every module name ``path`` imports, with its line, wherever the import is."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = resolve_relative(path, node.level, node.module) if node.level else (node.module or "")
            found.append((node.lineno, mod))
            # ``from capview import x`` may import a submodule; ``from . import x`` too
            found += [(node.lineno, f"{mod}.{a.name}") for a in node.names if a.name != "*"]
        elif isinstance(node, ast.Call):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
            if name in ("import_module", "__import__") and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found.append((node.lineno, arg.value))
    return found


def is_ui(mod: str) -> bool:
    return any(mod == lib or mod.startswith(lib + ".") for lib in UI_LIBS)


@pytest.mark.parametrize("layer", ["engine", "remote"])
def test_engine_and_remote_never_import_ui_libraries(layer):
    files = py_files(layer)
    assert files, f"no modules under capview/{layer}"
    bad = [f"{p.relative_to(PKG.parent)}:{line}: imports {mod}"
           for p in files for line, mod in imported_modules(p) if is_ui(mod)]
    assert not bad, "UI library imported below the fronts:\n" + "\n".join(bad)


def test_engine_and_remote_do_not_import_the_fronts():
    """Importing capview.cli or capview.tui would pull rich/textual in indirectly."""
    bad = [f"{p.relative_to(PKG.parent)}:{line}: imports {mod}"
           for p in py_files("engine", "remote") for line, mod in imported_modules(p)
           if re.match(r"capview\.(cli|tui)(\.|$)", mod)]
    assert not bad, "\n".join(bad)


SHELL_BUILDING = [
    (re.compile(r"\bshlex\s*\.\s*(quote|join)\b"), "shlex.quote/join"),
    (re.compile(r"\bfrom\s+shlex\s+import\b"), "from shlex import"),
    (re.compile(r"""["'\s]sh\s+-c\b|["']sh["']\s*,\s*["']-c["']"""), "sh -c"),
]


@pytest.mark.parametrize("front", ["cli", "tui"])
def test_fronts_never_build_shell_commands(front):
    files = py_files(front)
    assert files, f"no modules under capview/{front}"
    bad = []
    for p in files:
        for n, text in enumerate(p.read_text().splitlines(), 1):
            for rx, what in SHELL_BUILDING:
                if rx.search(text):
                    bad.append(f"{p.relative_to(PKG.parent)}:{n}: {what}: {text.strip()}")
    assert not bad, "a front builds shell commands (that is the engine's job):\n" + "\n".join(bad)


# ---- the checkers themselves catch what they should -------------------------------------

def test_import_walker_sees_every_form(tmp_path):
    d = tmp_path / "capview" / "engine"
    d.mkdir(parents=True)
    src = d / "sample.py"
    src.write_text(
        "import os, rich.console\n"
        "from textual.app import App\n"
        "def f():\n"
        "    import textual\n"
        "    from rich import print as p\n"
        "class C:\n"
        "    def g(self):\n"
        "        import importlib\n"
        "        importlib.import_module('rich.table')\n"
        "        __import__('textual.widgets')\n"
        "if False:\n"
        "    from . import layout\n"
    )
    global PKG
    old, PKG = PKG, tmp_path / "capview"
    try:
        mods = imported_modules(src)
    finally:
        PKG = old
    ui = sorted({m for _, m in mods if is_ui(m)})
    assert set(ui) >= {"rich.console", "textual.app", "textual", "rich", "rich.table", "textual.widgets"}, ui
    assert "capview.engine.layout" in {m for _, m in mods}
    assert not is_ui("richtext") and not is_ui("textualize_extra")


def test_shell_pattern_catches_sh_c():
    hits = lambda s: any(rx.search(s) for rx, _ in SHELL_BUILDING)  # noqa: E731
    assert hits('cmd = "sh -c " + shlex.quote(x)')
    assert hits("argv = ['sh', '-c', script]")
    assert hits("from shlex import quote")
    assert not hits("# the engine builds scripts; fronts only render events")
    assert not hits("fresh -check")

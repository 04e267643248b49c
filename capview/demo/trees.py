"""The app trees the demo deploys: the packaged sample app, varied per release."""

from __future__ import annotations

import os
import random
from importlib import resources
from pathlib import Path

from capview.demo.errors import DemoError

LEGACY_VERSION = "v0.9.0"
# Fixed mtime for generated files, so rebuilding a tree changes nothing but content.
_EPOCH = 1_700_000_000


def _app_files() -> dict[str, bytes]:
    """The sample app as shipped in the package: relative path -> bytes."""
    root = resources.files("capview.demo").joinpath("app")
    files: dict[str, bytes] = {}

    def walk(node, prefix: str) -> None:
        for child in node.iterdir():
            name = child.name
            if name == "__pycache__" or name.endswith(".pyc"):
                continue
            rel = f"{prefix}{name}"
            if child.is_dir():
                walk(child, rel + "/")
            else:
                files[rel] = child.read_bytes()

    walk(root, "")
    if "app.py" not in files:
        raise DemoError("the sample app is missing from the capview package (capview/demo/app/app.py)")
    return files


def _pattern_svg() -> bytes:
    """A deterministic ~150 KB background image: gives releases a realistic size."""
    rnd = random.Random(20240601)
    parts = ['<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 1200 800" width="1200" height="800">\n']
    palette = ("#2f6fdf", "#5b8def", "#9db8f5", "#d6e2fb", "#1d4fb0")
    for _ in range(2600):
        parts.append(
            f'<circle cx="{rnd.uniform(0, 1200):.2f}" cy="{rnd.uniform(0, 800):.2f}" r="{rnd.uniform(1, 9):.2f}" '
            f'fill="{rnd.choice(palette)}" fill-opacity="{rnd.uniform(0.05, 0.35):.2f}"/>\n'
        )
    parts.append("</svg>\n")
    return "".join(parts).encode()


def _tree_files(tree: str) -> dict[str, bytes]:
    """The files of one source tree. v1.1.0 changes one template and one CSS file."""
    files = _app_files()
    files["static/pattern.svg"] = _pattern_svg()
    if tree == "v1.0.0":
        files["VERSION"] = b"v1.0.0\n"
    elif tree == "v1.1.0":
        files["VERSION"] = b"v1.1.0\n"
        files["templates/index.html"] = files["templates/index.html"].replace(
            b"</main>",
            b"  <p class=\"new\">New in v1.1.0: this line, and a new accent colour.</p>\n  </main>",
        )
        files["static/style.css"] = files["static/style.css"].replace(b"#2f6fdf", b"#0f9d76") + (
            b".new { padding: .5rem 1rem; border-left: 4px solid var(--accent); background: #fff; }\n"
        )
    elif tree == "v1.2.0-broken":
        files = _tree_files("v1.1.0")
        files["VERSION"] = b"v1.2.0\n"
        files["BROKEN_HEALTH"] = b"This release fails its health check on purpose (capview demo).\n"
    elif tree == "next":
        # No VERSION file: the app then reports its release directory's name, so
        # `capview release ANY-NAME prod` from the dashboard shows that name.
        files = _tree_files("v1.1.0")
        del files["VERSION"]
        files["templates/index.html"] = files["templates/index.html"].replace(
            b"deployed by capview.", b"deployed by capview from src/next."
        )
    else:  # legacy: the app before capview
        files["VERSION"] = f"{LEGACY_VERSION}\n".encode()
        files["templates/index.html"] = files["templates/index.html"].replace(
            b"deployed by capview.", b"copied over the old one in place (the pre-capview way)."
        )
    return files


def _write_tree(root: Path, files: dict[str, bytes]) -> None:
    """(Re)write a tree to exactly ``files``; unchanged files are left alone."""
    wanted = set(files)
    if root.exists():
        for p in sorted(root.rglob("*"), reverse=True):
            rel = p.relative_to(root).as_posix()
            if p.is_symlink() or p.is_file():
                if rel not in wanted:
                    p.unlink()
            elif p.is_dir() and not any(p.iterdir()):
                p.rmdir()
    for rel, data in sorted(files.items()):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if path.read_bytes() == data:
                continue
        except OSError:
            pass
        path.write_bytes(data)
        os.chmod(path, 0o755 if rel.endswith((".sh", "app.py")) else 0o644)
        os.utime(path, (_EPOCH, _EPOCH))

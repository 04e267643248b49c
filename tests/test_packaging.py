"""A non-editable install works: build the wheel, install it into a fresh venv (what
``pipx install .`` and ``pip install .`` do), and run ``capview demo --headless`` from
there, far from the source tree. This is how package data (the demo's sample app, its
appctl.sh, the dashboard's stylesheet) is proved to be in the wheel (issue 20).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the capview wheel installed (not editable); returns its bin/."""
    root = tmp_path_factory.mktemp("pkg")
    src = root / "src"  # a copy, so the build leaves nothing in the repository
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".venv", ".git", "__pycache__", "*.egg-info", "build", "tests", "benchmarks", "screenshots", ".pytest_cache"))
    wheels = root / "wheels"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    cp = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(src)],
                        capture_output=True, text=True, timeout=600, env=env)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    (wheel,) = wheels.glob("capview-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for data in ("capview/demo/appctl.sh", "capview/demo/app/app.py", "capview/demo/app/templates/index.html",
                 "capview/demo/app/static/style.css", "capview/tui/app.tcss"):
        assert data in names, f"{data} is missing from the wheel"
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    cp = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], capture_output=True, text=True,
                        timeout=900, env=env)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    return venv / "bin"


def _run(bin_dir: Path, *args: str, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run([str(bin_dir / "capview"), *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def test_the_installed_capview_is_not_the_source_tree(installed, tmp_path):
    cp = subprocess.run([str(installed / "python"), "-c", "import capview, sys; print(capview.__file__)"],
                        capture_output=True, text=True, cwd=tmp_path, env={"PATH": os.environ["PATH"]})
    assert cp.returncode == 0, cp.stderr
    assert str(installed.parent) in cp.stdout and str(REPO) not in cp.stdout, cp.stdout


def test_installed_demo_headless(installed, tmp_path):
    cp = _run(installed, "demo", "--headless", cwd=tmp_path)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "Traceback" not in cp.stdout + cp.stderr
    assert "-> 200 v1.1.0" in cp.stdout, cp.stdout
    assert "v1.2.0" in cp.stdout and "failed" in cp.stdout, cp.stdout


def test_installed_version_and_completion(installed, tmp_path):
    cp = _run(installed, "--version", cwd=tmp_path)
    assert cp.returncode == 0 and cp.stdout.startswith("capview "), cp.stdout + cp.stderr
    cp = _run(installed, "completion", "bash", cwd=tmp_path)
    assert cp.returncode == 0 and "complete -o default -F _capview capview" in cp.stdout, cp.stdout + cp.stderr


def test_make_venv_shows_progress(tmp_path):
    """The first ``make demo`` creates the venv: its pip install is not silent (issue 20)."""
    venv = tmp_path / "venv"
    cp = subprocess.run(["make", "-C", str(REPO), "venv", f"VENV={venv}", f"PYTHON={sys.executable}"],
                        capture_output=True, text=True, timeout=900,
                        env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")})
    assert cp.returncode == 0, cp.stdout + cp.stderr
    out = cp.stdout
    assert f"make: creating {venv}" in out and "make: installing capview" in out, out
    assert "Successfully installed" in out and "capview" in out, out  # pip's own progress lines
    assert f"the CLI is {venv}/bin/capview" in out, out
    assert (venv / "bin" / "capview").is_file() and (venv / ".installed").is_file()
    again = subprocess.run(["make", "-C", str(REPO), "venv", f"VENV={venv}"], capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0 and "installing" not in again.stdout, again.stdout  # up to date: instant

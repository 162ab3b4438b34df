"""A wheel built from a copy of the source carries the policies and the unit; installed alone, ``reefknot files`` finds them.

The wheel goes into a throwaway virtual environment with ``--no-deps``; the project's own
environment lends it the dependencies through a ``.pth`` line read after the wheel's
files, so the ``gateway`` that runs is the installed one, not the checkout's. Nothing is
downloaded: the build uses the setuptools already installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.peers.paths import POLICIES, ROOT

SOURCE_PARTS = ["pyproject.toml", "README.md", "LICENSE", "gateway", "policies", "systemd"]
SHIPPED = sorted(POLICIES.glob("*.toml")) + sorted((ROOT / "systemd").glob("*.service"))


def run(*command: str | Path, cwd: Path) -> str:
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "REEFKNOT_CONFIG")}
    done = subprocess.run([str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, f"{' '.join(map(str, command))} -> {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment with the wheel installed in it; returns its directory."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    for part in SOURCE_PARTS:
        origin = ROOT / part
        if origin.is_dir():
            shutil.copytree(origin, source / part, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(origin, source / part)
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
        "-w", work / "dist", source, cwd=work)
    (wheel,) = (work / "dist").glob("reefknot-*.whl")
    venv = work / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=work)
    python = venv / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel, cwd=work)
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=work).strip())
    (site / "zz-borrowed-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return venv


def test_the_installed_command_runs_the_installed_package(installed: Path) -> None:
    where = run(installed / "bin" / "python", "-c", "import gateway; print(gateway.__file__)", cwd=installed)
    assert Path(where.strip()).is_relative_to(installed)


def test_the_wheel_lists_its_own_copies(installed: Path) -> None:
    out = run(installed / "bin" / "reefknot", "files", "--json", cwd=installed)
    rows = [json.loads(line) for line in out.splitlines()]
    assert [row["name"] for row in rows] == [source.name for source in SHIPPED]
    for row, source in zip(rows, SHIPPED):
        path = Path(row["path"])
        assert path.is_relative_to(installed) and not path.is_symlink()
        assert path.read_bytes() == source.read_bytes()


def test_the_wheel_installs_files_equal_to_the_sources_and_they_load(installed: Path, tmp_path: Path) -> None:
    etc, system = tmp_path / "etc" / "reefknot", tmp_path / "systemd"
    out = run(installed / "bin" / "reefknot", "files", "install", "--policies", etc / "policies", "--unit", system,
              cwd=tmp_path)
    assert f"wrote {system / 'reefknot.service'}" in out.splitlines()
    assert (system / "reefknot.service").read_bytes() == (ROOT / "systemd" / "reefknot.service").read_bytes()
    for name in ("default.toml", "relays.toml", "partners.example.toml"):
        assert (etc / "policies" / name).read_bytes() == (POLICIES / name).read_bytes()
    config = etc / "reefknot.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path}/reefknot.db"\n\n[policy]\nfiles = ["policies"]\n')
    out = run(installed / "bin" / "reefknot", "--config", config, "check-config", cwd=tmp_path)
    assert f"configuration: {config}" in out and "policy:" in out

"""The core stays pure: no I/O modules, no store or service imports, no clock reads."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.peers.paths import ROOT

CORE = ROOT / "gateway" / "core"
FORBIDDEN_MODULES = {
    "os", "io", "pathlib", "socket", "ssl", "asyncio", "subprocess", "shutil", "tempfile", "time",
    "smtplib", "imaplib", "http", "urllib", "sqlite3", "logging",
    "sqlalchemy", "alembic", "aiosmtpd", "aiosmtplib", "imapclient", "dkim", "psycopg", "click",
    "gateway.store", "gateway.service", "gateway.cli", "gateway.settings", "gateway.adapters",
}
CLOCK_CALLS = {("datetime", "now"), ("datetime", "utcnow"), ("datetime", "today"), ("date", "today")}
FORBIDDEN_BUILTINS = {"open", "print", "input"}


def _core_modules() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def _imported(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _is_forbidden(module: str) -> bool:
    return any(module == f or module.startswith(f + ".") for f in FORBIDDEN_MODULES)


def test_core_has_modules_to_check() -> None:
    assert len(_core_modules()) >= 8


@pytest.mark.parametrize("path", _core_modules(), ids=lambda p: str(p.relative_to(CORE)))
def test_core_module_imports_no_io(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    assert not {m for m in _imported(tree) if _is_forbidden(m)}


@pytest.mark.parametrize("path", _core_modules(), ids=lambda p: str(p.relative_to(CORE)))
def test_core_module_reads_no_clock_and_opens_nothing(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    calls = [n.func for n in ast.walk(tree) if isinstance(n, ast.Call)]
    clock = [
        f"{f.value.id}.{f.attr}" for f in calls
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and (f.value.id, f.attr) in CLOCK_CALLS
    ]
    builtins = [f.id for f in calls if isinstance(f, ast.Name) and f.id in FORBIDDEN_BUILTINS]
    assert clock == [] and builtins == []


def test_the_check_catches_a_forbidden_import() -> None:
    tree = ast.parse("import sqlalchemy.orm\nfrom gateway.store import db\nfrom gateway.core import ical\n")
    assert {m for m in _imported(tree) if _is_forbidden(m)} == {"sqlalchemy.orm", "gateway.store"}


def test_core_passes_strict_type_checking() -> None:
    """pyproject.toml makes mypy strict for gateway.core; the core must stay clean."""
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary", str(CORE)],
        capture_output=True, text=True, cwd=CORE.parent.parent, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_import_contracts_of_pyproject_hold() -> None:
    """import-linter's contracts: a pure core, edges that reach the store only through the service, and the layers."""
    command = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(command)], cwd=CORE.parent.parent, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout

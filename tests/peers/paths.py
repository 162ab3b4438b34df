"""Where the tests find the project and their data, wherever in ``tests/`` they sit."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the source checkout
DATA = ROOT / "tests" / "data"
POLICIES = ROOT / "policies"

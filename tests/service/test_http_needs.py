"""Whether serve starts its HTTP face: the defaults and [http] say yes; without [http], only a feature in use does."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.service.http_needs import decide_http
from gateway.service.trust import load_trust
from gateway.settings.config import Config, load_config
from gateway.store.db import Database
from tests.peers.cli import Reefknot

ALICE = "alice@foo.example"


def decide(config_path: Path) -> tuple[bool, tuple[str, ...]]:
    config = load_config(str(config_path))
    db = Database(config.database_url)
    try:
        db.ensure_schema()
        decision = decide_http(config, load_trust(config), db)
        return decision.listens, decision.reasons
    finally:
        db.dispose()


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "reefknot.toml"
    path.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "r.db"}"\n')
    return path


def test_the_built_in_defaults_listen_so_that_one_command_gives_caldav_and_metrics(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'r.db'}")
    try:
        decision = decide_http(Config(), load_trust(Config()), db)
    finally:
        db.dispose()
    assert (decision.listens, decision.reasons) == (True, ("built-in defaults",))


def test_a_file_with_http_listens_and_one_without_it_or_any_need_does_not(config_path: Path) -> None:
    assert decide(config_path) == (False, ())
    config_path.write_text(config_path.read_text() + '\n[http]\nlisten = "127.0.0.1:8099"\n')
    assert decide(config_path) == (True, ("[http] is configured",))


def test_caldav_app_passwords_and_feed_urls_need_the_face_without_http(
    config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = Reefknot(config_path, capsys)
    run("users", "add", ALICE)
    assert decide(config_path) == (False, ())
    run("users", "password", "add", ALICE, "--label", "phone")
    assert decide(config_path) == (True, ("1 principal has CalDAV app passwords",))
    run("users", "feed", ALICE)
    assert decide(config_path)[1] == ("1 principal has CalDAV app passwords", "1 principal has calendar feed URLs")


def test_a_policy_that_publishes_free_busy_by_url_needs_the_face_without_http(config_path: Path) -> None:
    (config_path.parent / "public.toml").write_text('default = "apply"\n\n[freebusy]\nurl = "public"\n')
    config_path.write_text(config_path.read_text() + '\n[policy]\nfiles = ["public.toml"]\n')
    listens, reasons = decide(config_path)
    assert listens and reasons == ("the policy publishes free/busy by URL ([freebusy] url = public)",)

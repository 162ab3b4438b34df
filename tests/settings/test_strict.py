"""Strict configuration: every key of every section refuses a wrong type, every path is the file's, every file is there.

A mistake is one line naming the file, the line, the key and what was expected; the
commands that will read the files (``check-config``, ``serve``) refuse a missing one
with exit 78 before anything listens, and a database whose driver does not import is
refused the same way, never with a traceback.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway.settings.config import Config, load_config
from gateway.settings.reader import SettingError
from tests.peers.paths import ROOT
from tests.peers.servers import LOOPBACK, free_port

WRONG = "[1]"  # a list of a number: no key of any section takes one

# (header, the label errors carry, the settings the table needs anyway, every other key)
SECTION_KEYS = [
    ("[database]", "[database]", {}, ("url",)),
    *[(f"[{name}]", f"[{name}]", {}, ("listen", "mode", "max_message_size", "tls_cert", "tls_key",
                                       "allowed_networks", "hostname", "next_hop")) for name in ("smtp", "lmtp")],
    ("[processing]", "[processing]", {}, ("workers", "message_timeout")),
    ("[[imap]]", "[[imap]] #1", {"host": '"imap.foo.example"', "username": '"calendar"', "password_command": '"pass"'},
     ("port", "security", "ca_file", "folder", "processed_folder", "idle_timeout", "poll_interval", "recipients",
      "password_file", "xoauth2_token_command")),
    ("[outbound]", "[outbound]", {}, ("smarthost", "reply_domain", "starttls", "ca_file", "username",
                                      "password_file", "timeout", "lifetime", "retry_min", "retry_max",
                                      "poll_interval", "templates_dir")),
    ("[outbound.dkim]", "[outbound.dkim]", {"domain": '"foo.example"', "selector": '"rk"', "key_file": '"dkim.key"'},
     ()),
    ("[http]", "[http]", {}, ("listen", "public_url", "tls_cert", "tls_key", "trusted_proxies", "inbox_days")),
    ("[policy]", "[policy]", {}, ("files",)),
    ("[trust]", "[trust]", {}, ("authserv_ids", "dns", "dns_timeout")),
    ("[retention]", "[retention]", {}, ("raw_messages", "inbox", "outbox")),
    ("[log]", "[log]", {}, ("level", "format")),
]
WRONG_TYPES = [
    pytest.param(header, label, needed, key, id=f"{header}-{key}")
    for header, label, needed, others in SECTION_KEYS
    for key in (*needed, *others)
]


def write(directory: Path, text: str) -> Path:
    path = directory / "reefknot.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(("header", "label", "needed", "key"), WRONG_TYPES)
def test_every_key_of_every_section_refuses_a_wrong_type_on_its_own_line(
    tmp_path: Path, header: str, label: str, needed: dict[str, str], key: str
) -> None:
    lines = [header, *(f"{name} = {value}" for name, value in needed.items() if name != key), f"{key} = {WRONG}"]
    path = write(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(SettingError) as error:
        load_config(str(path))
    assert error.value.line == len(lines), str(error.value)
    assert str(error.value).startswith(f"{path}:{len(lines)}: {label} {key}"), str(error.value)
    assert "\n" not in str(error.value)


# (section text with {path} where a file goes, the key, what the setting becomes in Config)
FILE_SETTINGS = [
    pytest.param('[smtp]\ntls_cert = "{path}"\ntls_key = "{other}"\n', "tls_cert",
                 lambda c: c.smtp_options.tls_cert, id="smtp-tls_cert"),
    pytest.param('[smtp]\ntls_cert = "{other}"\ntls_key = "{path}"\n', "tls_key",
                 lambda c: c.smtp_options.tls_key, id="smtp-tls_key"),
    pytest.param('[lmtp]\ntls_cert = "{path}"\ntls_key = "{other}"\n', "tls_cert",
                 lambda c: c.lmtp_options.tls_cert, id="lmtp-tls_cert"),
    pytest.param('[lmtp]\ntls_cert = "{other}"\ntls_key = "{path}"\n', "tls_key",
                 lambda c: c.lmtp_options.tls_key, id="lmtp-tls_key"),
    pytest.param('[http]\ntls_cert = "{path}"\ntls_key = "{other}"\n', "tls_cert",
                 lambda c: c.http_options.tls_cert, id="http-tls_cert"),
    pytest.param('[http]\ntls_cert = "{other}"\ntls_key = "{path}"\n', "tls_key",
                 lambda c: c.http_options.tls_key, id="http-tls_key"),
    pytest.param('[[imap]]\nhost = "h"\nusername = "u"\npassword_file = "{path}"\n', "password_file",
                 lambda c: c.imap[0].password_file, id="imap-password_file"),
    pytest.param('[[imap]]\nhost = "h"\nusername = "u"\npassword_file = "{other}"\nca_file = "{path}"\n', "ca_file",
                 lambda c: c.imap[0].ca_file, id="imap-ca_file"),
    pytest.param('[outbound]\nca_file = "{path}"\n', "ca_file", lambda c: c.outbound.ca_file, id="outbound-ca_file"),
    pytest.param('[outbound]\nusername = "u"\npassword_file = "{path}"\n', "password_file",
                 lambda c: c.outbound.password_file, id="outbound-password_file"),
    pytest.param('[outbound]\n[outbound.dkim]\ndomain = "foo.example"\nselector = "rk"\nkey_file = "{path}"\n',
                 "key_file", lambda c: c.dkim_keys[0].key_file, id="dkim-key_file"),
]


@pytest.mark.parametrize(("text", "key", "setting"), FILE_SETTINGS)
def test_a_relative_file_is_the_configuration_files_and_an_absolute_one_stays(
    tmp_path: Path, text: str, key: str, setting: object
) -> None:
    (tmp_path / "etc").mkdir()
    path = write(tmp_path / "etc", text.format(path="secret/file.pem", other="/srv/other.pem"))
    assert setting(load_config(str(path))) == str(tmp_path / "etc" / "secret" / "file.pem")  # type: ignore[operator]
    path = write(tmp_path / "etc", text.format(path="/srv/file.pem", other="/srv/other.pem"))
    assert setting(load_config(str(path))) == "/srv/file.pem"  # type: ignore[operator]


@pytest.mark.parametrize(("text", "key", "setting"), FILE_SETTINGS)
def test_a_file_that_cannot_be_read_names_its_key_and_line_when_files_are_checked(
    tmp_path: Path, text: str, key: str, setting: object
) -> None:
    other = tmp_path / "other.pem"
    other.write_text("present\n")
    path = write(tmp_path, text.format(path="missing.pem", other=other))
    load_config(str(path))  # a command that reads none of the files does not need them
    with pytest.raises(SettingError) as error:
        load_config(str(path), check_files=True)
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if "missing.pem" in text)
    assert str(error.value).startswith(f"{path}:{line}: "), str(error.value)
    assert f"{key}: {tmp_path / 'missing.pem'}: no such file or directory (expected a readable file)" in str(error.value)

    (tmp_path / "missing.pem").mkdir()
    with pytest.raises(SettingError, match=f"{key}: .*: is a directory"):
        load_config(str(path), check_files=True)
    (tmp_path / "missing.pem").rmdir()
    (tmp_path / "missing.pem").write_text("present\n")
    assert setting(load_config(str(path), check_files=True)) == str(tmp_path / "missing.pem")  # type: ignore[operator]


def test_a_templates_directory_must_be_a_directory(tmp_path: Path) -> None:
    path = write(tmp_path, '[outbound]\nsmarthost = "127.0.0.1:25"\ntemplates_dir = "templates"\n')
    assert load_config(str(path)).outbound.templates_dir == str(tmp_path / "templates")
    with pytest.raises(SettingError, match=r":3: \[outbound\] templates_dir: .*: no such directory "
                                           r"\(expected a readable directory\)"):
        load_config(str(path), check_files=True)
    (tmp_path / "templates").write_text("not a directory\n")
    with pytest.raises(SettingError, match="templates_dir: .*: not a directory"):
        load_config(str(path), check_files=True)
    (tmp_path / "templates").unlink()
    (tmp_path / "templates").mkdir()
    assert load_config(str(path), check_files=True).outbound.templates_dir == str(tmp_path / "templates")


def test_the_second_dkim_key_is_named_on_its_own_line(tmp_path: Path) -> None:
    (tmp_path / "ed.key").write_text("key\n")
    path = write(tmp_path, '[outbound]\n\n[[outbound.dkim]]\ndomain = "foo.example"\nselector = "ed"\n'
                           'key_file = "ed.key"\n\n[[outbound.dkim]]\ndomain = "foo.example"\nselector = "rsa"\n'
                           'key_file = "rsa.key"\n')
    assert [k.key_file for k in load_config(str(path)).dkim_keys] == [str(tmp_path / "ed.key"),
                                                                         str(tmp_path / "rsa.key")]
    with pytest.raises(SettingError, match=r":11: \[\[outbound.dkim\]\] #2 key_file: .*rsa.key: no such file"):
        load_config(str(path), check_files=True)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("sqlite:///reefknot.db", "sqlite:///{dir}/reefknot.db", id="relative"),
        pytest.param("sqlite:///data/r.db?timeout=5", "sqlite:///{dir}/data/r.db?timeout=5", id="relative-query"),
        pytest.param("sqlite+pysqlite:///r.db", "sqlite+pysqlite:///{dir}/r.db", id="relative-driver"),
        pytest.param("sqlite:////var/lib/reefknot/r.db", "sqlite:////var/lib/reefknot/r.db", id="absolute"),
        pytest.param("sqlite:///:memory:", "sqlite:///:memory:", id="memory"),
        pytest.param("postgresql://rk@db.example/rk", "postgresql+psycopg://rk@db.example/rk", id="bare-postgresql"),
        pytest.param("postgresql+psycopg://rk@db.example/rk", "postgresql+psycopg://rk@db.example/rk", id="psycopg"),
    ],
)
def test_a_database_url_is_made_explicit_and_a_relative_sqlite_file_is_the_configuration_files(
    tmp_path: Path, url: str, expected: str
) -> None:
    path = write(tmp_path, f'[database]\nurl = "{url}"\n')
    assert load_config(str(path)).database_url == expected.format(dir=tmp_path)


def test_without_a_database_url_the_default_stays_in_the_working_directory(tmp_path: Path) -> None:
    assert load_config(str(write(tmp_path, "[smtp]\n"))).database_url == Config.database_url == "sqlite:///reefknot.db"


@pytest.mark.parametrize(
    "url",
    ["mysql://rk@db.example/rk", "reefknot.db", "sqlite+aiosqlite:///r.db", "postgresql+asyncpg://rk@db/rk",
     "oracle+cx_oracle://rk:secret@db/rk", "sqlite://host/r.db"],
)
def test_an_unsupported_database_is_refused_on_its_line(tmp_path: Path, url: str) -> None:
    path = write(tmp_path, f'[smtp]\n\n[database]\nurl = "{url}"\n')
    with pytest.raises(SettingError) as error:
        load_config(str(path))
    assert str(error.value).startswith(f"{path}:4: [database] url: "), str(error.value)
    assert "secret" not in str(error.value)  # a password never reaches the log


# A meta path finder that makes the named driver's import fail, as on a machine without it.
WITHOUT = """
import sys
from importlib.abc import MetaPathFinder

class Refuse(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, Refuse())
from gateway.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run_without(blocked: set[str], config: Path, command: str) -> subprocess.CompletedProcess[str]:
    code = textwrap.dedent(WITHOUT.format(blocked=blocked))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(config.parent)}
    return subprocess.run([sys.executable, "-c", code, "--config", str(config), command], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=60, stdin=subprocess.DEVNULL)


def serving_config(directory: Path, database: str, smtp: str = "") -> Path:
    return write(directory, f'[database]\nurl = "{database}"\n\n[smtp]\nlisten = "{LOOPBACK}:{free_port()}"\n{smtp}\n'
                            f'[lmtp]\nlisten = "unix:{directory}/lmtp.sock"\n\n[http]\nlisten = "{LOOPBACK}:{free_port()}"\n')


@pytest.mark.parametrize("command", ["check-config", "serve"])
@pytest.mark.parametrize(
    ("url", "blocked", "install"),
    [
        pytest.param("postgresql://rk@{host}/rk", {"psycopg"}, "pip install 'reefknot[postgresql]'", id="bare"),
        pytest.param("postgresql+psycopg://rk@{host}/rk", {"psycopg"}, "pip install 'reefknot[postgresql]'",
                     id="psycopg"),
        pytest.param("postgresql+psycopg2://rk@{host}/rk", {"psycopg2"}, "pip install psycopg2", id="psycopg2"),
    ],
)
def test_a_missing_database_driver_is_one_line_saying_what_to_install(
    tmp_path: Path, command: str, url: str, blocked: set[str], install: str
) -> None:
    config = serving_config(tmp_path, url.format(host=f"{LOOPBACK}:{free_port()}"))
    done = run_without(blocked, config, command)
    assert done.returncode == 78, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(f"reefknot: {config}:2: [database] url: ") and install in done.stderr, done.stderr
    assert not (tmp_path / "lmtp.sock").exists()  # serve listened nowhere


def test_an_installed_driver_passes_the_check_without_a_connection(tmp_path: Path) -> None:
    config = serving_config(tmp_path, f"postgresql+psycopg://rk@{LOOPBACK}:{free_port()}/rk")
    done = run_without(set(), config, "check-config")
    assert done.returncode == 0, done.stderr
    assert "database: postgresql+psycopg://rk@" in done.stdout


@pytest.mark.parametrize("command", ["check-config", "serve"])
def test_a_missing_certificate_stops_serve_before_it_listens(tmp_path: Path, command: str) -> None:
    (tmp_path / "tls.key").write_text("key\n")
    config = serving_config(tmp_path, "sqlite:///reefknot.db", 'tls_cert = "tls.pem"\ntls_key = "tls.key"\n')
    done = run_without(set(), config, command)
    assert done.returncode == 78, done.stdout + done.stderr
    assert done.stderr == (f"reefknot: {config}:6: [smtp] tls_cert: {tmp_path / 'tls.pem'}: no such file or "
                           "directory (expected a readable file)\n")
    assert not (tmp_path / "reefknot.db").exists() and not (tmp_path / "lmtp.sock").exists()

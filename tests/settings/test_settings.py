"""Everything the operator writes is read by one reader: every mistake names the file, the line and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.settings.config import Config, load_config
from gateway.settings.reader import SettingError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "reefknot.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ('[smpt]\nlisten = "127.0.0.1:2525"\n', 1, "unknown key 'smpt'"),
        ('[database]\nurl = "sqlite:///x.db"\n\n[smtp]\nlisten = "127.0.0.1:2525"\nmode = "relay"\n', 6,
         "[smtp] mode: 'relay' is not one of transport, copy"),
        ('[processing]\nworkers = 2\nmessage_timout = 5\n', 3, "[processing] unknown key 'message_timout'"),
        ('[processing]\nmessage_timeout = 7200\n', 2, "[processing] message_timeout: 7200 is not a number of seconds"),
        ('[http]\nlisten = "localhost"\n', 2, "[http] listen: 'localhost' is not HOST:PORT or unix:PATH"),
        ('[outbound]\nsmarthost = "relay.example:25"\nretry_min = 7200\n', 3,
         "[outbound] retry_min must not exceed retry_max"),
        ('[outbound]\n[outbound.dkim]\ndomain = "foo.example"\nselector = "rk"\n', 2,
         "[outbound.dkim] domain, selector and key_file are all needed"),
        ('[[imap]]\nhost = "a.example"\nusername = "a"\npassword_file = "p"\n\n'
         '[[imap]]\nhost = "b.example"\nusername = "b"\npassword_file = "p"\nidle_timeout = 1800\n', 10,
         "[[imap]] #2 idle_timeout: 1800"),
        ('[trust]\ndns = "no"\n', 2, "[trust] dns must be true or false"),
        ('[policy]\nfiles = [1]\n', 2, "[policy] files must be a string or a list of strings"),
        ('[smtp\n', 1, "invalid TOML"),
        ('[policy]\nfile = "rules.toml"\n', 2, "[policy] unknown key 'file' (did you mean 'files'?"),
        ('[http]\ntls_cert = "missing.pem"\n', 1, "[http] tls_cert and tls_key go together"),  # tls_key: not there
        ('[http]\ntrusted_proxies = ["10.0.0.0/33"]\n', 2, "[http] trusted_proxies: '10.0.0.0/33' is not an address"),
        ('[retention]\nraw_messages = "soon"\n', 2, "[retention] raw_messages: bad duration 'soon'"),
        ('[retention]\nraw_message = "7d"\n', 2, "did you mean 'raw_messages'?"),
        ('[log]\nformat = "xml"\n', 2, "[log] format: 'xml' is not one of text, json"),
    ],
)
def test_a_configuration_mistake_names_the_file_the_line_and_the_setting(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SettingError) as error:
        load_config(str(path))
    assert (error.value.file, error.value.line) == (str(path), line)
    assert message in str(error.value) and str(error.value).startswith(f"{path}:{line}:")


def test_settings_are_read_into_typed_values_relative_to_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[smtp]\nlisten = ["127.0.0.1:2525", "unix:/run/rk.sock"]\n[processing]\nworkers = 0\n'
                           'message_timeout = 5\n[policy]\nfiles = "policies"\n[outbound]\nreply_domain = "foo.example"\n')
    config = load_config(str(path))
    assert [str(listener) for listener in config.smtp] == ["127.0.0.1:2525", "unix:/run/rk.sock"]
    assert (config.processing_workers, config.message_timeout) == (0, 5.0)
    assert config.policy_files == (str(tmp_path / "policies"),)
    assert config.sends_mail and config.reply_domain == "foo.example"
    assert not load_config(str(write(tmp_path, "[http]\n"))).sends_mail
    assert Config().lmtp == load_config(str(write(tmp_path, "[smtp]\n"))).lmtp


def test_a_missing_configuration_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SettingError, match="cannot read"):
        load_config(str(tmp_path / "absent.toml"))

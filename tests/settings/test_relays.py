"""The calendar relays file: the shipped defaults load, and every mistake is named."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.core.trust.evidence import Role, SenderEvidence
from gateway.settings.config import ConfigError
from gateway.settings.policy import load_relays
from tests.peers.paths import POLICIES

SHIPPED = POLICIES / "relays.toml"


def test_the_shipped_relays_load() -> None:
    relays = {r.name: r for r in load_relays(SHIPPED)}
    assert set(relays) == {"google-calendar", "apple-icloud", "outlook-com"}
    google = relays["google-calendar"]
    assert google.dkim_domains == frozenset({"google.com"})
    assert google.speaks_for(Role.ORGANIZER, "c_abc@group.calendar.google.com")
    assert not google.speaks_for(Role.ORGANIZER, "alice@gmail.com")
    assert google.vouches(SenderEvidence("a@gmail.com", "x@calendar-server.bounces.google.com", dkim_domains=frozenset({"google.com"})))
    assert not google.vouches(SenderEvidence("a@gmail.com", "a@gmail.com", dkim_domains=frozenset({"google.com"})))
    assert not relays["apple-icloud"].speaks_for(Role.ORGANIZER, "2_abc@imip.me.com")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "relays.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[relay]]\nname = "x"\ndkim_domains = ["x.example"]\ncolour = "red"\n', "unknown key 'colour'"),
        ('[[relay]]\nname = "Not Kebab"\ndkim_domains = ["x.example"]\n', "kebab-case"),
        ('[[relay]]\nname = "x"\n', "dkim_domains must name at least one domain"),
        ('[[relay]]\nname = "x"\ndkim_domains = ["not a domain"]\n', "is not a domain"),
        ('[[relay]]\nname = "x"\ndkim_domains = "x.example"\n', "dkim_domains must be a list of strings"),
        ('[[relay]]\nname = "x"\ndkim_domains = ["x.example"]\nsenders = ["nobody"]\n', "senders: bad address pattern"),
        ('[[relay]]\nname = "x"\ndkim_domains = ["x.example"]\norganizers = ["*@x.example"]\n', "need envelope_senders"),
        ('[[relay]]\nname = "x"\ndkim_domains = ["x.example"]\n[[relay]]\nname = "x"\ndkim_domains = ["y.example"]\n',
         "relay x is defined twice"),
        ('[relays]\nname = "x"\n', "unknown key 'relays'"),
        ('relay = "x"\n', "use [[relay]] for each relay"),
        ("[[relay]\n", "relays.toml"),
    ],
)
def test_mistakes_are_named(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"relays\.toml") as error:
        load_relays(write(tmp_path, text))
    assert message in str(error.value)


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_relays(tmp_path / "absent.toml")


def test_domains_and_patterns_are_normalized(tmp_path: Path) -> None:
    (relay,) = load_relays(write(
        tmp_path,
        '[[relay]]\nname = "partner-cal"\ndkim_domains = ["Cal.Partner.Example."]\n'
        'envelope_senders = ["Bounces@Cal.Partner.Example"]\nattendees = ["room-*@partner.example"]\n',
    ))
    assert relay.dkim_domains == frozenset({"cal.partner.example"})
    assert relay.speaks_for(Role.ATTENDEE, "room-4@partner.example")
    assert not relay.speaks_for(Role.ORGANIZER, "room-4@partner.example")

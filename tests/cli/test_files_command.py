"""``reefknot files``: the shipped policy files and systemd unit, listed, shown and installed without the source tree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.cli import main
from tests.peers.paths import POLICIES, ROOT

SOURCES = sorted(POLICIES.glob("*.toml")) + sorted((ROOT / "systemd").glob("*.service"))
EX_USAGE, EX_CANTCREAT = 64, 73


def run(capsys: pytest.CaptureFixture[str], *args: str, expect: int = 0) -> tuple[str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    assert code == expect, f"reefknot {' '.join(args)} -> {code}\n{out}\n{err}"
    return out, err


def install(capsys: pytest.CaptureFixture[str], tmp_path: Path, *args: str, expect: int = 0) -> tuple[str, str]:
    return run(capsys, "files", "install", "--policies", str(tmp_path / "policies"),
               "--unit", str(tmp_path / "system"), *args, expect=expect)


def test_the_listing_names_every_shipped_file_and_where_it_is(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [json.loads(line) for line in run(capsys, "files", "--json")[0].splitlines()]
    assert [row["name"] for row in rows] == [source.name for source in SOURCES]
    for row, source in zip(rows, SOURCES):
        assert Path(row["path"]).read_bytes() == source.read_bytes()
    assert {row["name"]: row["kind"] for row in rows}["reefknot.service"] == "unit"
    assert {row["name"]: row["install"] for row in rows}["strict.toml"] == "if named"


def test_the_table_has_one_line_per_file_under_a_header(capsys: pytest.CaptureFixture[str]) -> None:
    lines = run(capsys, "files")[0].splitlines()
    assert lines[0].split() == ["NAME", "KIND", "INSTALL", "PATH"]
    assert [line.split()[0] for line in lines[1:]] == [source.name for source in SOURCES]


@pytest.mark.parametrize("source", SOURCES, ids=lambda source: source.name)
def test_show_prints_the_file_unchanged(source: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    assert main(["files", "show", source.name]) == 0
    assert capsysbinary.readouterr().out == source.read_bytes()


def test_show_takes_the_source_tree_path_too(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    assert main(["files", "show", "systemd/reefknot.service"]) == 0
    assert capsysbinary.readouterr().out == (ROOT / "systemd" / "reefknot.service").read_bytes()


def test_show_of_an_unknown_name_is_a_usage_error_that_lists_the_names(capsys: pytest.CaptureFixture[str]) -> None:
    err = run(capsys, "files", "show", "postfix.cf", expect=EX_USAGE)[1]
    assert "postfix.cf" in err and "reefknot.service" in err and "default.toml" in err


def test_install_copies_the_default_set_byte_for_byte(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = install(capsys, tmp_path)[0]
    policies = sorted(path.name for path in (tmp_path / "policies").iterdir())
    assert policies == sorted(source.name for source in POLICIES.glob("*.toml") if source.name != "strict.toml")
    for name in policies:
        assert (tmp_path / "policies" / name).read_bytes() == (POLICIES / name).read_bytes()
        assert f"wrote {tmp_path / 'policies' / name}" in out.splitlines()
    unit = tmp_path / "system" / "reefknot.service"
    assert unit.read_bytes() == (ROOT / "systemd" / "reefknot.service").read_bytes()
    assert f"wrote {unit}" in out.splitlines()
    assert not [path for path in tmp_path.rglob(".*")]  # no temporary file left behind


def test_installing_again_changes_nothing_and_says_so(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    install(capsys, tmp_path)
    out = install(capsys, tmp_path)[0]
    assert out.splitlines() and all(line.startswith("unchanged ") for line in out.splitlines())


def test_an_edited_file_is_never_replaced_and_nothing_else_is_written(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    install(capsys, tmp_path)
    edited = tmp_path / "policies" / "default.toml"
    edited.write_text('default = "hold"\n')
    (tmp_path / "system" / "reefknot.service").unlink()
    err = install(capsys, tmp_path, expect=EX_CANTCREAT)[1]
    assert str(edited) in err and "--force" in err
    assert edited.read_text() == 'default = "hold"\n'
    assert not (tmp_path / "system" / "reefknot.service").exists()


def test_force_replaces_an_edited_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    install(capsys, tmp_path)
    edited = tmp_path / "policies" / "default.toml"
    edited.write_text('default = "hold"\n')
    out = install(capsys, tmp_path, "--force")[0]
    assert f"replaced {edited}" in out.splitlines()
    assert edited.read_bytes() == (POLICIES / "default.toml").read_bytes()


def test_named_files_are_the_only_ones_copied(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run(capsys, "files", "install", "--policies", str(tmp_path), "strict.toml", "relays.toml")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["relays.toml", "strict.toml"]
    assert (tmp_path / "strict.toml").read_bytes() == (POLICIES / "strict.toml").read_bytes()


def test_only_the_kinds_given_a_directory_are_installed(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run(capsys, "files", "install", "--unit", str(tmp_path))
    assert [path.name for path in tmp_path.iterdir()] == ["reefknot.service"]


@pytest.mark.parametrize("args", [["install"], ["install", "--unit", "{tmp}", "default.toml"],
                                  ["install", "--policies", "{tmp}", "nosuch.toml"]])
def test_install_without_a_place_for_a_file_is_a_usage_error(
    args: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    run(capsys, "files", *(arg.format(tmp=tmp_path) for arg in args), expect=EX_USAGE)
    assert not list(tmp_path.iterdir())


def test_a_directory_that_cannot_be_created_is_reported(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    err = run(capsys, "files", "install", "--unit", str(tmp_path / "file" / "system"), expect=EX_CANTCREAT)[1]
    assert "cannot write" in err and str(tmp_path / "file" / "system") in err

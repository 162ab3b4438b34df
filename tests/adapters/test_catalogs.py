"""The gettext catalogs: complete, compiled, shipped, and equal to what GNU msgfmt makes."""

from __future__ import annotations

import gettext
import shutil
import subprocess
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest

from gateway.adapters.templates import PACKAGE_DIR, TEMPLATES_DIR
from gateway.catalogs import (
    catalog_files,
    check,
    compile_mo,
    python_messages,
    read_po,
    template_messages,
)

ROOT = PACKAGE_DIR.parent


def test_german_is_shipped() -> None:
    assert [p.parent.parent.name for p in catalog_files()] == ["de"]


@pytest.mark.parametrize("po", catalog_files(), ids=lambda p: p.parent.parent.name)
def test_every_message_is_translated_and_the_mo_is_current(po: Path) -> None:
    assert check(po) == []


@pytest.mark.parametrize("po", catalog_files(), ids=lambda p: p.parent.parent.name)
def test_the_compiled_catalog_equals_gnu_msgfmt(po: Path, tmp_path: Path) -> None:
    msgfmt = shutil.which("msgfmt")
    if msgfmt is None:
        pytest.skip("GNU gettext's msgfmt is not installed")
    subprocess.run([msgfmt, "--check", "-o", str(tmp_path / "gnu.mo"), str(po)], check=True, capture_output=True)
    with (tmp_path / "gnu.mo").open("rb") as gnu, po.with_suffix(".mo").open("rb") as ours:
        assert gettext.GNUTranslations(ours)._catalog == gettext.GNUTranslations(gnu)._catalog  # type: ignore[attr-defined]


def test_package_data_ships_templates_and_catalogs() -> None:
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["gateway"]
    shipped = [*TEMPLATES_DIR.iterdir(), *(p.with_suffix(".mo") for p in catalog_files())]
    for path in shipped:
        relative = str(path.relative_to(PACKAGE_DIR))
        assert any(fnmatch(relative, pattern) for pattern in patterns), relative


def test_po_reading_handles_contexts_plurals_continuations_and_fuzzy_entries() -> None:
    entries = read_po(
        '# comment\nmsgid ""\nmsgstr "Plural-Forms: nplurals=2; plural=(n != 1);\\n"\n\n'
        'msgctxt "month"\nmsgid "May"\nmsgstr "Mai"\n\n'
        'msgid "{n} time"\nmsgid_plural "{n} times"\nmsgstr[0] "{n}-mal"\nmsgstr[1] ""\n"{n}-mal"\n\n'
        '#, fuzzy\nmsgid "Hello"\nmsgstr "Hallo"\n\n'
        'msgid "Say \\"hi\\""\nmsgstr "Sag \\"hallo\\""\n'
    )
    translations = gettext.GNUTranslations()
    translations._parse(_BytesFile(compile_mo(entries)))  # type: ignore[attr-defined]
    assert translations.pgettext("month", "May") == "Mai"
    assert translations.ngettext("{n} time", "{n} times", 3) == "{n}-mal"
    assert translations.gettext("Hello") == "Hello"  # fuzzy: not used
    assert translations.gettext('Say "hi"') == 'Sag "hallo"'


class _BytesFile:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def read(self) -> bytes:
        return self._data


def test_messages_are_found_in_code_and_templates() -> None:
    assert python_messages('tr.pgettext("weekday", "Monday")\ntr.gettext(name)\n_("Hi")') == {
        ("weekday", "Monday"), (None, "Hi")}
    assert template_messages('{{ _("When:") }} {% trans trimmed x=1 %}A\n  {{ x }} B{% endtrans %}') == {
        (None, "When:"), (None, "A %(x)s B")}

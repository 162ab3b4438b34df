"""The words of outgoing mail: Jinja templates and gettext catalogs, loaded from files.

Gives ``gateway.core.imip.render`` its ``Renderer``: the core decides what a mail says, this
module finds the templates (the operator's ``[outbound] templates_dir`` first, then the
packaged ones in ``gateway/imip_templates/``) and the catalogs (``gateway/locale/<lang>/
LC_MESSAGES/reefknot.mo``; English is the source language and needs none). HTML
templates are autoescaped. Not for deciding anything about the mail.
"""

from __future__ import annotations

import gettext
import threading
from collections.abc import Mapping
from pathlib import Path

import jinja2

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # gateway/
TEMPLATES_DIR = PACKAGE_DIR / "imip_templates"
LOCALE_DIR = PACKAGE_DIR / "locale"
DOMAIN = "reefknot"
SOURCE_LANGUAGE = "en"


def shipped_languages() -> tuple[str, ...]:
    """English and every language with a compiled catalog in the package."""
    found = sorted(p.parent.parent.name for p in LOCALE_DIR.glob(f"*/LC_MESSAGES/{DOMAIN}.mo"))
    return (SOURCE_LANGUAGE, *found)


def _autoescape(name: str | None) -> bool:
    return name is not None and name.endswith((".html", ".htm", ".xml"))


class TemplateRenderer:
    """Templates and translations for every language, loaded once and cached.

    ``templates_dir`` (the operator's) overrides packaged templates file by file; a
    missing file there falls back to the packaged one. Undefined template variables are
    errors, so a broken override fails when checked, not silently in a mail.
    """

    def __init__(self, templates_dir: str | Path | None = None, locale_dir: str | Path = LOCALE_DIR) -> None:
        search = [str(templates_dir)] if templates_dir else []
        self._loader = jinja2.FileSystemLoader([*search, str(TEMPLATES_DIR)])
        self._locale_dir = str(locale_dir)
        self._environments: dict[str, jinja2.Environment] = {}
        self._translations: dict[str, gettext.NullTranslations] = {}
        self._lock = threading.Lock()

    def translator(self, language: str) -> gettext.NullTranslations:
        """The catalog for a language (``de-AT`` falls back to ``de``), else English."""
        with self._lock:
            if language not in self._translations:
                wanted = [language, language.split("-")[0]]
                self._translations[language] = gettext.translation(
                    DOMAIN, self._locale_dir, languages=wanted, fallback=True
                )
            return self._translations[language]

    def render(self, template: str, language: str, context: Mapping[str, object]) -> str:
        return self._environment(language).get_template(template).render(dict(context))

    def _environment(self, language: str) -> jinja2.Environment:
        translations = self.translator(language)
        with self._lock:
            env = self._environments.get(language)
            if env is None:
                env = jinja2.Environment(
                    loader=self._loader,
                    autoescape=_autoescape,
                    extensions=["jinja2.ext.i18n"],
                    undefined=jinja2.StrictUndefined,
                    trim_blocks=True,
                    lstrip_blocks=True,
                    keep_trailing_newline=True,
                    auto_reload=False,  # templates are read once; a changed template needs a restart
                )
                env.install_gettext_translations(translations, newstyle=True)  # type: ignore[attr-defined]
                self._environments[language] = env
            return env

    def check(self) -> list[str]:
        """Every template compiles in every shipped language; the problems found, for check-config."""
        problems = []
        for language in shipped_languages():
            for name in ("imip.txt", "imip.html"):
                try:
                    self._environment(language).get_template(name)
                except jinja2.TemplateError as error:
                    problems.append(f"{name} ({language}): {error}")
        return problems

"""Message catalogs: every text the TV screen shows, in Swedish, Danish and English.

The catalogs are TOML files in ``messages/`` (package data), one per language, with tables that
become dotted keys (``[incoming] answer = "Svara"`` is ``incoming.answer``). English is the
reference: a catalog is refused when it is loaded if it lacks a key the reference has, has one the
reference lacks, or uses other ``{placeholders}`` for a key. So a missing translation is found
when the agent starts, not when the citizen's screen needs it.
"""

from __future__ import annotations

import logging
import string
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from vaka.errors import ConfigError

log = logging.getLogger(__name__)

LANGUAGES = ("sv", "da", "en")
"""The languages there is a catalog for."""
REFERENCE = "en"
"""The catalog every other one is checked against."""


class CatalogError(ConfigError):
    """A message catalog is missing, malformed, incomplete, or asked for a key it lacks."""


def _flatten(
    table: Mapping[str, Any], prefix: str, out: dict[str, str], problems: list[str]
) -> None:
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            _flatten(value, f"{dotted}.", out, problems)
        elif isinstance(value, str):
            out[dotted] = value
        else:
            problems.append(f"{dotted}: must be a string, not {type(value).__name__}")


def _placeholders(text: str) -> frozenset[str]:
    return frozenset(name for _, name, _, _ in string.Formatter().parse(text) if name)


def load_messages(language: str, directory: Path | None = None) -> dict[str, str]:
    """Read one catalog as a flat ``{dotted key: text}`` dict, without checking it against others.

    ``directory`` overrides the packaged ``messages/`` folder (for tests and local overrides).
    """
    if language not in LANGUAGES:
        raise CatalogError(
            f"no message catalog for language {language!r}: choose one of {', '.join(LANGUAGES)}"
        )
    name = f"{language}.toml"
    try:
        if directory is None:
            raw = resources.files("vaka.agent.ui").joinpath("messages").joinpath(name).read_bytes()
            where = f"packaged messages/{name}"
        else:
            raw = (directory / name).read_bytes()
            where = str(directory / name)
        data = tomllib.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise CatalogError(f"cannot read the {language} message catalog: {err}") from err
    problems: list[str] = []
    messages: dict[str, str] = {}
    _flatten(data, "", messages, problems)
    for key, text in messages.items():
        try:
            _placeholders(text)
        except ValueError as err:
            problems.append(f"{key}: bad placeholder ({err})")
    if problems:
        raise CatalogError(f"{where} is invalid: " + "; ".join(problems))
    return messages


def check_against(language: str, messages: Mapping[str, str], reference: Mapping[str, str]) -> None:
    """Raise :class:`CatalogError` listing every key missing, extra or with other placeholders."""
    problems: list[str] = []
    missing = sorted(reference.keys() - messages.keys())
    extra = sorted(messages.keys() - reference.keys())
    if missing:
        problems.append("missing " + ", ".join(missing))
    if extra:
        problems.append("unknown " + ", ".join(extra))
    for key in sorted(reference.keys() & messages.keys()):
        want, got = _placeholders(reference[key]), _placeholders(messages[key])
        if want != got:
            problems.append(
                f"{key} uses {{{', '.join(sorted(got))}}}, the {REFERENCE} catalog "
                f"{{{', '.join(sorted(want))}}}"
            )
    if problems:
        raise CatalogError(f"the {language} message catalog does not match: " + "; ".join(problems))


class Catalog:
    """The texts of one language, checked against the reference catalog when created.

    >>> Catalog("sv").text("incoming.calling", name="Anna")
    'Anna ringer'
    """

    def __init__(self, language: str, *, directory: Path | None = None) -> None:
        self._language = language
        self._messages = load_messages(language, directory)
        if language != REFERENCE:
            check_against(language, self._messages, load_messages(REFERENCE, directory))
        log.debug("loaded the %s message catalog (%d texts)", language, len(self._messages))

    @property
    def language(self) -> str:
        """The catalog's language code (``sv``, ``da`` or ``en``)."""
        return self._language

    def keys(self) -> frozenset[str]:
        """Every dotted key in the catalog."""
        return frozenset(self._messages)

    def has(self, key: str) -> bool:
        """Whether ``key`` is in the catalog."""
        return key in self._messages

    def text(self, key: str, **params: object) -> str:
        """The text for ``key`` with its ``{placeholders}`` filled in from ``params``."""
        try:
            template = self._messages[key]
        except KeyError:
            raise CatalogError(f"no text {key!r} in the {self._language} message catalog") from None
        try:
            return template.format(**params)
        except (KeyError, IndexError) as err:
            raise CatalogError(
                f"text {key!r} of the {self._language} catalog needs the parameter {err}"
            ) from err

    def __repr__(self) -> str:
        return f"Catalog({self._language!r})"

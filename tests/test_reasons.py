"""Reasons with codes (:mod:`vaka.protocol.reasons`): an English text that keeps its code through
the API, the tables and errors, and a code central can send that every console catalog knows,
with the same parameters in Swedish, Danish and English."""

import re
from pathlib import Path

from vaka.central.calls import reasons as call_reasons
from vaka.central.directory.policy import CallRefused
from vaka.protocol.reasons import (
    UNIT_WORDS,
    Reason,
    code_of,
    from_column,
    from_view,
    reason_of,
    to_column,
    to_view,
    unit_said,
    with_code,
)

ROOT = Path(__file__).resolve().parent.parent
CATALOGS = ROOT / "central" / "vaka" / "central" / "console" / "i18n"
#: ``Reason("text", "code"`` (also across lines) in central's and the protocol's sources
MADE = re.compile(r"Reason\(\s*(?:f?\"[^\"]*\"|[\w.]+),\s*\"([a-z_]+)\"", re.S)


def catalog(lang: str) -> dict[str, str]:
    text = (CATALOGS / f"{lang}.js").read_text(encoding="utf-8")
    return dict(re.findall(r'^\s*"(why\.[a-z_]+)": "((?:[^"\\]|\\.)*)",$', text, re.M))


def codes_central_sends() -> set[str]:
    codes = set(UNIT_WORDS.values()) | set(call_reasons.UNIT_OUTCOMES.values())
    for folder in ("central/vaka/central", "protocol/vaka/protocol"):
        for path in (ROOT / folder).rglob("*.py"):
            codes |= set(MADE.findall(path.read_text(encoding="utf-8")))
    return codes


def test_a_reason_is_its_english_text_and_keeps_its_code() -> None:
    said = Reason("no answer after 30 s", "no_answer", seconds=30)
    assert said == "no answer after 30 s" and isinstance(said, str)
    assert f"why: {said}" == "why: no answer after 30 s"
    assert with_code(said) == {
        "reason": "no answer after 30 s",
        "reason_code": "no_answer",
        "params": {"seconds": 30},
    }
    assert with_code("a person's words") == {"reason": "a person's words"}
    assert code_of("plain") == {"code": None, "params": {}}
    back = from_view(to_view(said))
    assert isinstance(back, Reason) and (back, back.code, back.params) == (
        said,
        "no_answer",
        {"seconds": 30},
    )
    assert from_view("connection lost") == "connection lost"


def test_a_code_named_code_is_a_parameter_like_any_other() -> None:
    said = Reason("enrolment code ABCD-EFGH", "enrolment_code", code="ABCD-EFGH")
    assert (said.code, said.params) == ("enrolment_code", {"code": "ABCD-EFGH"})


def test_a_text_column_keeps_the_code_and_reads_old_rows_as_they_are() -> None:
    said = Reason("enrolment code ABCD-EFGH", "enrolment_code", code="ABCD-EFGH")
    back = from_column(to_column(said))
    assert isinstance(back, Reason) and back.params == {"code": "ABCD-EFGH"}
    assert to_column("x" * 300) == "x" * 200  # a person's words, cut as before
    assert from_column("the old words") == "the old words"
    assert from_column("{not json") == "{not json"


def test_an_error_raised_with_a_reason_keeps_its_code() -> None:
    err = CallRefused(Reason("already answered by Nina", "already_answered", name="Nina"))
    assert str(err) == "already answered by Nina"
    assert with_code(reason_of(err))["reason_code"] == "already_answered"
    assert reason_of(ValueError("plain")) == "plain"


def test_the_units_words_get_their_codes_and_others_none() -> None:
    assert unit_said("hung up by the citizen").code == "citizen_hung_up"
    assert unit_said("something new").code is None
    refused = call_reasons.unit_refusal("declined by the citizen", "declined", 30)
    assert (refused, refused.code) == ("the unit refused: declined by the citizen", "unit_declined")
    odd = call_reasons.unit_refusal("ticket window closed", None, 30)
    assert (odd.code, odd.params) == ("unit_refused", {"why": "ticket window closed"})
    silent = call_reasons.unanswered(False, 30, 8)
    assert (silent, silent.code) == ("the unit did not answer within 8 s", "unit_silent")


def test_every_code_central_sends_is_in_every_catalog_with_the_same_parameters() -> None:
    codes = codes_central_sends()
    assert {"no_answer", "connection_lost", "you_hung_up", "enrolment_code"} <= codes
    catalogs = {lang: catalog(lang) for lang in ("en", "sv", "da")}
    for lang, words in catalogs.items():
        missing = sorted(c for c in codes if f"why.{c}" not in words)
        assert missing == [], f"{lang} has no words for {missing}"
    for key, english in catalogs["en"].items():
        wanted = set(re.findall(r"\{(\w+)\}", english))
        for lang in ("sv", "da"):
            assert set(re.findall(r"\{(\w+)\}", catalogs[lang][key])) == wanted, (lang, key)

"""firmware_config/tv/pipewire/: the echo canceller's drop-in parses, and the image installs it.

PipeWire's configuration is SPA-JSON: JSON with bare words, ``=`` or ``:`` between key and value
(or nothing), optional commas and ``#`` comments. :func:`parse_spa_json` reads that dialect
strictly enough to catch unbalanced brackets, a key without a value or a stray token. The install
check runs the image recipe's own board-configuration section (cut from
``image/hooks/customize.sh``) against a scratch root.
"""

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
DROPIN_DIR = REPO / "firmware_config/tv/pipewire/pipewire.conf.d"
ECHO_CANCEL = DROPIN_DIR / "60-vaka-echo-cancel.conf"
CUSTOMIZE = REPO / "image/hooks/customize.sh"

_TOKEN = re.compile(
    r"""
    (?P<space>\s+|\#[^\n]*)
    | (?P<punct>[{}\[\]])
    | (?P<sep>[=:,])
    | (?P<string>"(?:[^"\\]|\\.)*")
    | (?P<bare>[^\s{}\[\]=:,"\#]+)
    """,
    re.VERBOSE,
)


class SpaJsonError(ValueError):
    """The text is not valid SPA-JSON."""


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise SpaJsonError(f"unexpected character {text[position]!r} at offset {position}")
        kind = match.lastgroup
        assert kind is not None
        if kind != "space" and kind != "sep":
            tokens.append((kind, match.group()))
        position = match.end()
    return tokens


def _scalar(kind: str, value: str) -> Any:
    if kind == "string":
        return bytes(value[1:-1], "utf-8").decode("unicode_escape")
    if value in ("true", "false"):
        return value == "true"
    if value == "null":
        return None
    for convert in (int, float):
        try:
            return convert(value)
        except ValueError:
            pass
    return value


def parse_spa_json(text: str) -> dict[str, Any]:
    """Parse a PipeWire configuration file (a top-level object without braces)."""
    tokens = _tokens(text)
    position = 0

    def value() -> Any:
        nonlocal position
        if position >= len(tokens):
            raise SpaJsonError("a value is missing at the end")
        kind, token = tokens[position]
        position += 1
        if token == "{":
            return members("}")
        if token == "[":
            items: list[object] = []
            while True:
                if position >= len(tokens):
                    raise SpaJsonError("unclosed [")
                if tokens[position][1] == "]":
                    position += 1
                    return items
                items.append(value())
        if kind == "punct":
            raise SpaJsonError(f"unexpected {token!r}")
        return _scalar(kind, token)

    def members(closing: str | None) -> dict[str, Any]:
        nonlocal position
        result: dict[str, Any] = {}
        while True:
            if position >= len(tokens):
                if closing is not None:
                    raise SpaJsonError(f"unclosed object, expected {closing!r}")
                return result
            kind, token = tokens[position]
            if closing is not None and token == closing:
                position += 1
                return result
            if kind == "punct":
                raise SpaJsonError(f"expected a key, found {token!r}")
            position += 1
            key = _scalar(kind, token)
            if key in result:
                raise SpaJsonError(f"key {key!r} given twice")
            result[str(key)] = value()

    return members(None)


# -- the parser itself ---------------------------------------------------------------------------


def test_parser_reads_the_dialect_and_refuses_broken_text() -> None:
    parsed = parse_spa_json(
        'a = 1 b: "x y" # comment\nc { d = [ 1, 2 three ] e = true } f = 480/48000'
    )
    assert parsed == {"a": 1, "b": "x y", "c": {"d": [1, 2, "three"], "e": True}, "f": "480/48000"}
    for broken, problem in [
        ("a = { b = 1", "unclosed object"),
        ("a = [ 1 2", "unclosed"),
        ("a = { b = 1 } }", "expected a key"),
        ("a =", "missing"),
        ("a = 1 a = 2", "given twice"),
    ]:
        with pytest.raises(SpaJsonError, match=problem):
            parse_spa_json(broken)


# -- the drop-in --------------------------------------------------------------------------------


def test_echo_cancel_dropin_parses_with_the_webrtc_canceller() -> None:
    config = parse_spa_json(ECHO_CANCEL.read_text())
    assert list(config) == ["context.modules"]
    modules = config["context.modules"]
    assert [m["name"] for m in modules] == ["libpipewire-module-echo-cancel"]
    args = modules[0]["args"]
    # `library.name` picks the canceller; the old `aec.method` is ignored by PipeWire >= 0.3.5x.
    assert args["library.name"] == "aec/libspa-aec-webrtc"
    assert "aec.method" not in args
    assert args["audio.rate"] == 48000
    assert all(key.startswith("webrtc.") for key in args["aec.args"])
    assert args["source.props"]["node.name"] == "vaka-ec-source"
    assert args["sink.props"]["node.name"] == "vaka-ec-sink"
    # Made the defaults by priority; the raw streams hold no device when idle.
    assert args["source.props"]["priority.session"] > 2000
    assert args["sink.props"]["priority.session"] > 2000
    assert args["capture.props"]["node.passive"] is True
    assert args["playback.props"]["node.passive"] is True
    known = {
        "library.name", "aec.args", "audio.rate", "audio.channels", "audio.position",
        "node.latency", "capture.props", "source.props", "sink.props", "playback.props",
        "buffer.max_size", "buffer.play_delay", "monitor.mode",
    }  # fmt: skip
    assert set(args) <= known, set(args) - known


def test_every_dropin_is_a_conf_file_that_parses() -> None:
    files = sorted(DROPIN_DIR.iterdir())
    assert files and all(f.suffix == ".conf" and re.match(r"^\d\d-vaka-", f.name) for f in files)
    for f in files:
        parse_spa_json(f.read_text())


# -- the image recipe ---------------------------------------------------------------------------


def _board_section() -> str:
    """The board-configuration part of the customize hook, as the image runs it."""
    text = CUSTOMIZE.read_text()
    start = text.index("# --- board configuration from firmware_config/")
    end = text.index("# --- ", start + 10)
    return text[start:end]


@pytest.mark.parametrize("profile", ["tv", "nightcam"])
def test_image_recipe_installs_the_dropin_for_the_tv_only(profile: str, tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    script = "set -euo pipefail\nsay() { :; }\n" + _board_section()
    subprocess.run(
        ["bash", "-c", script],
        env={
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "root": str(root),
            "VAKA_REPO": str(REPO),
            "VAKA_PROFILE": profile,
        },
        check=True,
    )
    installed = root / "etc/pipewire/pipewire.conf.d/60-vaka-echo-cancel.conf"
    assert (root / "boot/firmware/config.txt").is_file()  # the section really ran
    if profile == "tv":
        assert installed.read_bytes() == ECHO_CANCEL.read_bytes()
        assert installed.stat().st_mode & 0o777 == 0o644
    else:
        assert not (root / "etc/pipewire").exists()


def _board_packages(variant: str) -> list[str]:
    """What image/build.sh installs for a variant besides the common set: the board's packages
    and its profile's (image/profiles/)."""
    script = (
        'HERE=image; . "image/variants/$1.conf"; . "image/profiles/$PROFILE.conf"; '
        'echo "${BOARD_PACKAGES[*]} ${PROFILE_PACKAGES[*]}"'
    )
    run = subprocess.run(
        ["bash", "-c", script, "-", variant], cwd=REPO, capture_output=True, text=True, check=True
    )
    return run.stdout.split()


def test_tv_variant_installs_pipewire() -> None:
    tv = _board_packages("tv")
    for package in ("pipewire", "wireplumber", "pipewire-pulse", "pipewire-alsa"):
        assert package in tv
    assert "pipewire" not in _board_packages("nightcam")

"""The GPIO pin map per unit profile, read from ``pins.toml`` beside this module.

The packaged ``pins.toml`` is the one source of truth for which BCM GPIO does what; a unit (or a
test) may point :func:`load_pin_map` at another file. The file is checked once, as a whole: unknown
keys, pins outside GPIO0-27 and a pin used twice within a profile are all reported in one
:class:`~vaka.errors.ConfigError`.
"""

import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vaka.errors import ConfigError

#: BCM GPIO numbers on a Raspberry Pi's 40-pin header.
FIRST_PIN, LAST_PIN = 0, 27

#: A BCM GPIO number; strict, so that ``true`` or ``18.0`` are refused rather than converted.
Pin = Annotated[int, Field(strict=True, ge=FIRST_PIN, le=LAST_PIN)]


class PinMap(BaseModel):
    """The pins of one profile (BCM numbers); ``None`` where the unit has no such part."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The shutter's servo; a hardware-PWM pin (GPIO12, 13, 18 or 19).
    shutter_servo: Pin | None = None
    #: Limit switch pressed when the shutter is closed (to ground, pull-up).
    shutter_closed_switch: Pin | None = None
    #: Limit switch pressed when the shutter is open (to ground, pull-up).
    shutter_open_switch: Pin | None = None
    #: The indicator LED, lit whenever the camera runs.
    led: Pin | None = None
    #: The IR illuminator (through a MOSFET).
    ir_light: Pin | None = None
    #: The citizen's button (``tv``: "call the night staff"; ``nightcam``: the privacy mode,
    #: "I have visitors", pressed again to end it; to ground, pull-up).
    button: Pin | None = None

    def used(self) -> dict[str, int]:
        """``{part: pin}`` for every part that has a pin, in field order."""
        return {part: pin for part, pin in self.model_dump().items() if pin is not None}


class PinMaps(BaseModel):
    """The whole file: one table per profile."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    nightcam: PinMap = PinMap()
    tv: PinMap = PinMap()


def duplicate_pins(profile: str, pins: PinMap) -> list[str]:
    """One problem per pin that parts of ``profile`` share: ``tv: GPIO18 is used more than once
    (shutter_servo, led)``."""
    parts_by_pin: dict[int, list[str]] = {}
    for part, pin in pins.used().items():
        parts_by_pin.setdefault(pin, []).append(part)
    return [
        f"{profile}: GPIO{pin} is used more than once ({', '.join(parts)})"
        for pin, parts in parts_by_pin.items()
        if len(parts) > 1
    ]


def _describe(err: ValidationError) -> list[str]:
    problems = []
    for item in err.errors(include_url=False):
        where = ".".join(str(p) for p in item["loc"]) or "file"
        if item["type"] == "extra_forbidden":
            problems.append(f"{where}: unknown {'profile' if len(item['loc']) == 1 else 'key'}")
        else:
            problems.append(f"{where}: {item['msg']}")
    return problems


def parse_pin_maps(data: dict[str, object], source: str = "pin map") -> PinMaps:
    """Validate a parsed pin-map file, reporting every problem in one :class:`ConfigError`."""
    try:
        maps = PinMaps.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{source} is invalid: {'; '.join(_describe(err))}") from None
    problems = [
        problem
        for profile in PinMaps.model_fields
        for problem in duplicate_pins(profile, getattr(maps, profile))
    ]
    if problems:
        raise ConfigError(f"{source} is invalid: {'; '.join(problems)}")
    return maps


def load_pin_map(profile: str, path: Path | None = None) -> PinMap:
    """The pins of ``profile`` from ``path``, or from the packaged ``pins.toml`` by default."""
    if profile not in PinMaps.model_fields:
        known = ", ".join(repr(p) for p in PinMaps.model_fields)
        raise ConfigError(f"no pin map for unit profile {profile!r}: expected one of {known}")
    source = str(path) if path is not None else "packaged pins.toml"
    try:
        if path is None:
            text = (
                resources.files("vaka.agent.hw").joinpath("pins.toml").read_text(encoding="utf-8")
            )
        else:
            text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read pin map {source}: {err}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"pin map {source} is not valid TOML: {err}") from None
    pins: PinMap = getattr(parse_pin_maps(data, f"pin map {source}"), profile)
    return pins

"""firmware_config/: board configuration agrees with the agent.

* Each profile's ``config.txt`` (PWM overlay, ``gpio=`` power-on states, enabled buses) is
  cross-checked against the pin map the agent loads (:func:`vaka.agent.hw.pins.load_pin_map`).
* The udev rules hand group ``vaka`` exactly the device classes that ``vaka-agent.service`` allows.

The firewall (``nftables.conf``) is tested in ``tests/test_firmware_firewall.py``.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from vaka.agent.hw.pins import PinMap, load_pin_map

REPO = Path(__file__).resolve().parent.parent
FIRMWARE = REPO / "firmware_config"
COMMON = FIRMWARE / "common"
PROFILES = ["nightcam", "tv"]

#: Legal (pin, func) pairs of the ``pwm`` overlay on the 40-pin header (BCM283x/2711 overlay
#: README: PWM0 on GPIO12 Alt0 or GPIO18 Alt5, PWM1 on GPIO13 Alt0 or GPIO19 Alt5).
PWM_FUNCS = {12: 4, 13: 4, 18: 2, 19: 2}
#: Parts driven as outputs (must start low) and read as inputs (to ground, pull-up).
OUTPUTS = ("led", "ir_light")
INPUTS = ("shutter_closed_switch", "shutter_open_switch", "button")
#: Header pins taken by a bus when config.txt turns it on.
BUS_PINS = {
    "dtparam=i2c_arm=on": {2, 3},
    "dtparam=spi=on": {7, 8, 9, 10, 11},
    "enable_uart=1": {14, 15},
}


@dataclass
class BoardConfig:
    """The lines of a config.txt that matter here (``[all]`` and unconditional ones)."""

    overlays: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    gpio: dict[int, str] = field(default_factory=dict)
    settings: set[str] = field(default_factory=set)


def parse_config_txt(text: str) -> BoardConfig:
    """Overlays with their parameters, ``gpio=`` lines by pin, other settings as lines."""
    config = BoardConfig()
    section = "[all]"
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            section = line
            continue
        if section != "[all]":
            continue
        key, _, value = line.partition("=")
        if key == "dtoverlay":
            name, *params = value.split(",")
            config.overlays.append((name, dict(p.partition("=")[::2] for p in params)))
        elif key == "gpio":
            pins, _, state = value.partition("=")
            for pin in pins.split(","):
                low, _, high = pin.partition("-")
                for n in range(int(low), int(high or low) + 1):
                    config.gpio[n] = state
        else:
            config.settings.add(line)
    return config


def pin_map_problems(profile: str, config: BoardConfig, pins: PinMap) -> list[str]:
    """Where ``config`` disagrees with ``pins``; empty when they agree."""
    problems = []
    used = pins.used()
    pwm = [params for name, params in config.overlays if name == "pwm"]
    if pins.shutter_servo is None:
        if pwm:
            problems.append(f"{profile}: PWM overlay but no shutter servo in the pin map")
    elif len(pwm) != 1:
        problems.append(f"{profile}: expected one dtoverlay=pwm for the servo, found {len(pwm)}")
    else:
        pin, func = int(pwm[0].get("pin", "18")), int(pwm[0].get("func", "2"))
        if pin != pins.shutter_servo:
            problems.append(
                f"{profile}: PWM overlay on GPIO{pin}, pin map servo on GPIO{pins.shutter_servo}"
            )
        if PWM_FUNCS.get(pin) != func:
            problems.append(f"{profile}: GPIO{pin} has no PWM function {func}")
    for pin in config.gpio:
        parts = [part for part, p in used.items() if p == pin]
        if not parts:
            problems.append(f"{profile}: gpio={pin} is not in the pin map")
        elif parts[0] == "shutter_servo":
            problems.append(f"{profile}: gpio={pin} fights the PWM overlay on the servo pin")
    for part, pin in used.items():
        expected = "op,dl" if part in OUTPUTS else "ip,pu" if part in INPUTS else None
        if expected and config.gpio.get(pin) != expected:
            problems.append(
                f"{profile}: {part} on GPIO{pin} needs gpio={pin}={expected}, "
                f"has {config.gpio.get(pin)!r}"
            )
    for setting, bus_pins in BUS_PINS.items():
        clash = bus_pins & set(used.values())
        if setting in config.settings and clash:
            problems.append(f"{profile}: {setting} takes GPIO{sorted(clash)} from the pin map")
    return problems


def board_config(profile: str) -> BoardConfig:
    """The profile's parsed config.txt."""
    return parse_config_txt((FIRMWARE / profile / "config.txt").read_text())


# -- config.txt against the pin map -------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_config_txt_agrees_with_the_pin_map(profile: str) -> None:
    config = board_config(profile)
    pins = load_pin_map(profile)
    assert pin_map_problems(profile, config, pins) == []
    # Every part but the servo gets a safe state from power-on.
    assert set(config.gpio) == set(pins.used().values()) - {pins.shutter_servo}


def test_cross_check_reports_disagreement() -> None:
    """The check can fail: a pin map that moved the servo, the LED and a switch."""
    config = board_config("nightcam")
    moved = load_pin_map("nightcam").model_copy(
        update={"shutter_servo": 12, "led": 5, "shutter_open_switch": 2}
    )
    config.settings.add("dtparam=i2c_arm=on")
    assert pin_map_problems("nightcam", config, moved) == [
        "nightcam: PWM overlay on GPIO18, pin map servo on GPIO12",
        "nightcam: gpio=25 is not in the pin map",
        "nightcam: gpio=24 is not in the pin map",
        "nightcam: shutter_open_switch on GPIO2 needs gpio=2=ip,pu, has None",
        "nightcam: led on GPIO5 needs gpio=5=op,dl, has None",
        "nightcam: dtparam=i2c_arm=on takes GPIO[2] from the pin map",
    ]


def test_config_txt_parser() -> None:
    config = parse_config_txt(
        "dtoverlay=pwm,pin=12,func=4  # servo\n[pi5]\ngpio=9=op\n[all]\ngpio=5-7,9=ip,pu\n"
    )
    assert config.overlays == [("pwm", {"pin": "12", "func": "4"})]
    assert config.gpio == {5: "ip,pu", 6: "ip,pu", 7: "ip,pu", 9: "ip,pu"}


@pytest.mark.parametrize("profile", PROFILES)
def test_board_settings(profile: str) -> None:
    config = board_config(profile)
    names = [name for name, _ in config.overlays]
    assert "dtparam=watchdog=on" in config.settings
    assert "imx219" in names and "camera_auto_detect=0" in config.settings
    assert "disable-bt" in names, "nothing on a unit uses Bluetooth"
    assert "enable_uart=0" in config.settings
    if profile == "tv":
        assert {"hdmi_ignore_cec=0", "hdmi_ignore_cec_init=1"} <= config.settings
        assert "vc4-kms-v3d" in names
    else:
        assert "dtparam=audio=off" in config.settings
        assert "dtparam=act_led_trigger=none" in config.settings, "no board LED in a bedroom"


@pytest.mark.parametrize("profile", PROFILES)
def test_cmdline(profile: str) -> None:
    text = (FIRMWARE / profile / "cmdline.txt").read_text()
    assert text.count("\n") == 1 and text.endswith("\n"), "cmdline.txt is one line"
    options = text.split()
    assert {"ro", "fsck.repair=yes", "rootwait"} <= set(options)
    consoles = [o for o in options if o.startswith("console=")]
    assert consoles == ["console=tty1"], "no console on the serial port"


# -- udev rules and the agent's device ACL ---------------------------------------------------------

#: udev subsystem -> the /proc/devices class that vaka-agent.service allows.
DEVICE_CLASSES = {
    "video4linux": "char-video4linux",
    "media": "char-media",
    "dma_heap": "char-dma_heap",
    "gpio": "char-gpiochip",
    "cec": "char-cec",
    "sound": "char-alsa",
}


def test_udev_rules_match_the_agent_device_allow_list() -> None:
    rules = [
        line
        for line in (COMMON / "udev/99-vaka.rules").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    subsystems = []
    for rule in rules:
        assert 'GROUP="vaka"' in rule and 'MODE="0660"' in rule, rule
        match = re.match(r'SUBSYSTEM=="(\w+)"', rule)
        assert match, rule
        subsystems.append(match.group(1))
    assert sorted(subsystems) == sorted(DEVICE_CLASSES)
    unit = (REPO / "systemd/vaka-agent.service").read_text()
    allowed = sorted(re.findall(r"^DeviceAllow=(\S+) rw$", unit, re.M))
    assert allowed == sorted(DEVICE_CLASSES.values())


# -- sysctl ---------------------------------------------------------------------------------------


def test_sysctl_keys_exist() -> None:
    """Each key without a leading ``-`` exists in this kernel (catches typos)."""
    entries = [
        line.split("=", 1)
        for line in (COMMON / "sysctl.d/90-vaka.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    settings = {key.strip(): value.strip() for key, value in entries}
    assert settings["kernel.core_pattern"] == "|/bin/false"
    assert settings["fs.suid_dumpable"] == "0"
    missing = [
        key
        for key in settings
        if not key.startswith("-") and not Path("/proc/sys", *key.split(".")).exists()
    ]
    assert missing == []

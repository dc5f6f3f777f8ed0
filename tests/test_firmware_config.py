"""firmware_config/: board configuration agrees with the agent, and the firewall does what it says.

* Each profile's ``config.txt`` (PWM overlay, ``gpio=`` power-on states, enabled buses) is
  cross-checked against the pin map the agent loads (:func:`vaka.agent.hw.pins.load_pin_map`).
* The udev rules hand group ``vaka`` exactly the device classes that ``vaka-agent.service`` allows.
* ``nftables.conf`` is checked by ``nft`` and then loaded into a throw-away network namespace with a
  veth pair: packets that leave are captured on the far end, so the test sees which destinations
  the ruleset lets out, and whether a SYN from the home network gets an answer (the technician
  switch opens TCP 22 with the very ``nft`` commands of ``vaka-technician-ssh.service``).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
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


# -- nftables -------------------------------------------------------------------------------------

NFT = shutil.which("nft")
RULES = COMMON / "nftables.conf"


@pytest.mark.skipif(NFT is None, reason="nft (nftables) is not installed")
def test_nft_accepts_the_ruleset() -> None:
    assert NFT is not None
    run = subprocess.run([NFT, "-c", "-f", str(RULES)], capture_output=True, text=True)
    if "Operation not permitted" in run.stderr:
        pytest.skip("nft --check needs CAP_NET_ADMIN")
    assert run.returncode == 0, run.stderr


#: Runs inside a new network namespace: veth v0 (the unit) <-> v1 (the home network), the ruleset
#: loaded, every frame arriving on v1 captured. argv: ruleset, JSON plan.
PROBE = textwrap.dedent(
    """
    import json, socket, struct, subprocess, sys, time

    rules, plan = sys.argv[1], json.loads(sys.argv[2])
    def sh(*cmd):
        subprocess.run(cmd, check=True)
    sh("ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1")
    sh("ip", "link", "set", "v0", "arp", "off")
    for address in ("192.0.2.1/24", "198.51.100.1/24"):
        sh("ip", "addr", "add", address, "dev", "v0")
    sh("ip", "-6", "addr", "add", "2001:db8::1/32", "dev", "v0", "nodad")
    for dev in ("lo", "v0", "v1"):
        sh("ip", "link", "set", dev, "up")
    if rules:
        sh("nft", "-f", rules)
    cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    cap.bind(("v1", 0))
    cap.setblocking(False)

    def frames():
        out = []
        while True:
            try:
                f = cap.recv(65535)
            except BlockingIOError:
                return out
            kind, p = struct.unpack("!H", f[12:14])[0], f[14:]
            if kind == 0x0800:
                dst = socket.inet_ntop(socket.AF_INET, p[16:20])
                proto, l4 = p[9], p[(p[0] & 15) * 4:]
            elif kind == 0x86DD:
                proto, dst, l4 = p[6], socket.inet_ntop(socket.AF_INET6, p[24:40]), p[40:]
            else:
                continue
            if proto in (6, 17):
                out.append(({6: "tcp", 17: "udp"}[proto], dst, struct.unpack("!H", l4[2:4])[0]))

    def outbound(proto, addr, port):
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        with socket.socket(family, kind) as s:
            s.setblocking(False)
            try:
                s.connect_ex((addr, port)) if proto == "tcp" else s.sendto(b"x", (addr, port))
            except OSError:
                pass
            time.sleep(0.05)
        return (proto, addr, port) in frames()

    def checksum(data):
        data += b"\\0" * (len(data) % 2)
        s = sum(struct.unpack(f"!{len(data) // 2}H", data))
        s = (s >> 16) + (s & 0xFFFF)
        return ~(s + (s >> 16)) & 0xFFFF

    def mac(dev):  # /sys still shows the host's namespace, so ask ip
        line = subprocess.run(["ip", "-o", "link", "show", dev], capture_output=True, text=True)
        return bytes.fromhex(line.stdout.split("link/ether ")[1].split()[0].replace(":", ""))

    listeners = {}
    def inbound(port, sport):
        # A SYN from 192.0.2.50 on the home network to the unit; any answer means it got in.
        if port not in listeners:
            listeners[port] = socket.create_server(("192.0.2.1", port))
        src, dst = socket.inet_aton("192.0.2.50"), socket.inet_aton("192.0.2.1")
        tcp = struct.pack("!HHIIBBHHH", sport, port, 1000, 0, 5 << 4, 0x02, 64240, 0, 0)
        pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
        tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0, src, dst)
        ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
        frames()
        cap.send(mac("v0") + mac("v1") + b"\\x08\\x00" + ip + tcp)
        time.sleep(0.1)
        return any(dst == "192.0.2.50" for _, dst, _ in frames())

    time.sleep(0.2)
    frames()
    results = []
    for step in plan:
        if step[0] == "out":
            results.append(outbound(*step[1:]))
        elif step[0] == "in":
            results.append(inbound(*step[1:]))
        else:
            results.append(subprocess.run(step[1], shell=True).returncode == 0)
    print(json.dumps(results))
    """
)


def technician_nft_commands() -> tuple[str, str]:
    """The ``nft`` commands vaka-technician-ssh.service runs to open and close TCP 22."""
    unit = (REPO / "systemd/vaka-technician-ssh.service").read_text()
    opening = re.search(r"^ExecStartPre=(/usr/sbin/nft add .*)$", unit, re.M)
    closing = re.search(r"^ExecStopPost=-(/usr/sbin/nft delete .*)$", unit, re.M)
    assert opening and closing
    return opening.group(1), closing.group(1)


def run_probe(tmp_path: Path, rules: Path | None, plan: list[list[object]]) -> list[bool]:
    """Run ``plan`` in a new network namespace with ``rules`` loaded; one result per step."""
    if os.geteuid() != 0 or NFT is None or not shutil.which("unshare") or not shutil.which("ip"):
        pytest.skip("needs root, nft, unshare and ip for a network namespace")
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    run = subprocess.run(
        ["unshare", "-n", sys.executable, str(script), str(rules or ""), json.dumps(plan)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if run.returncode != 0 and "Operation not permitted" in run.stderr:
        pytest.skip(f"cannot make a network namespace here: {run.stderr.strip()[-200:]}")
    assert run.returncode == 0, run.stderr
    results: list[bool] = json.loads(run.stdout)
    return results


#: (destination, port, protocol, allowed) with the ruleset's example addresses.
OUTBOUND = [
    ("192.0.2.10", 8883, "tcp", True),  # broker
    ("2001:db8::10", 8883, "tcp", True),  # broker, IPv6
    ("192.0.2.11", 8883, "tcp", False),  # not the broker
    ("192.0.2.10", 22, "tcp", False),  # the broker, but not MQTT
    ("198.51.100.5", 3478, "udp", True),  # TURN/STUN
    ("198.51.100.5", 5349, "tcp", True),  # TURN over TLS
    ("198.51.100.50", 3478, "udp", False),  # outside the TURN range
    ("2001:db8:10::5", 3478, "udp", True),  # TURN, IPv6
    ("2001:db8::99", 3478, "udp", False),
    ("192.0.2.99", 53, "udp", True),  # DNS
    ("192.0.2.99", 123, "udp", True),  # NTP
    ("192.0.2.99", 5000, "udp", False),  # anything else
    ("192.0.2.99", 443, "tcp", False),
    ("192.0.2.20", 443, "tcp", True),  # the update bundle server, HTTPS
    ("2001:db8::20", 443, "tcp", True),  # the same, IPv6
    ("192.0.2.20", 8443, "tcp", False),  # the bundle server on another port
    ("192.0.2.10", 443, "tcp", False),  # HTTPS on the broker: only where the site says so
]


def test_firewall_lets_out_only_broker_bundles_turn_dns_ntp(tmp_path: Path) -> None:
    plan: list[list[object]] = [["out", proto, addr, port] for addr, port, proto, _ in OUTBOUND]
    results = run_probe(tmp_path, RULES, plan)
    assert {o[:3]: r for o, r in zip(OUTBOUND, results, strict=True)} == {
        o[:3]: o[3] for o in OUTBOUND
    }
    # Without the ruleset the same probes all leave: the capture sees what is refused above.
    assert all(run_probe(tmp_path, None, plan))


def test_firewall_inbound_closed_but_for_the_technician_switch(tmp_path: Path) -> None:
    opening, closing = technician_nft_commands()
    plan: list[list[object]] = [
        ["in", 22, 40001],  # SSH while the switch is off
        ["in", 8883, 40002],  # any other port
        ["sh", opening],
        ["in", 22, 40003],  # SSH while the switch is on
        ["in", 8883, 40004],
        ["sh", closing],
        ["in", 22, 40005],  # off again
    ]
    assert run_probe(tmp_path, RULES, plan) == [False, False, True, True, False, True, False]

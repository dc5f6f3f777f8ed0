"""firmware_config/common/nftables.conf: the unit's firewall does what it says.

``nftables.conf`` is checked by ``nft`` and then loaded into a throw-away network namespace with a
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
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
COMMON = REPO / "firmware_config" / "common"

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

"""The owner's picture of where calls run: a unit at home, staff at the municipality, coturn.

::

        unit 100.100.1.2                                       staff 100.110.1.2
          │ eth0                                                  │ eth0
          │ lan 100.100.1.1                                       │ lan 100.110.1.1
        home  (cone NAT)                         municipality (NAT; optionally a firewall
          │ wan 100.64.1.2                          │ wan 198.18.3.2   that lets only
          │ lan 100.64.1.1                          │                  UDP 3478 / TCP 443 out)
        carrier (CGNAT: cone or symmetric)          │
          │ wan 198.18.2.2                          │
          │ c0 198.18.2.1  ◀── optional bad line    │ m0 198.18.3.1
        internet (a router; no default route) ──────┘
          │ r0 198.18.1.1
          │ eth0 198.18.1.2
        relay (coturn: UDP/TCP 3478, TLS 443)

Every box is a network namespace of one :class:`~vaka.devstack.netns.TestNet`. The "internet"
is 198.18.0.0/15, the homes and the municipality's inside are in 100.64.0.0/10; the internet
router knows nothing else, so nothing leaves the test bed. Central and the broker stay on the
host: the tests exchange SDP through the test process, as central would relay it.

A bad line (:class:`Profile` ``delay_ms``/``loss_percent``) sits on the internet router's link to
the carrier, so it delays and drops everything the unit sends or receives, once each way.

``unit_firewall`` loads the unit's own shipped ruleset (``firmware_config/common/nftables.conf``)
into the unit's namespace, with the relay as its only TURN address: outbound only to the broker,
DNS, NTP and the relay's STUN/TURN ports, so the unit's media can only go through its own
allocation on the relay.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vaka.devstack.impair import impair_link
from vaka.devstack.netns import Namespace, NatKind, TestNet

RELAY_IP = "198.18.1.2"
UNIT_IP = "100.100.1.2"
STAFF_IP = "100.110.1.2"
CARRIER_WAN_IP = "198.18.2.2"
MUNICIPALITY_WAN_IP = "198.18.3.2"
HOME_UPLINK = "wan"
"""The home router's interface towards the carrier: the unit's internet connection."""

UNIT_RULESET = Path(__file__).resolve().parents[3] / "firmware_config" / "common" / "nftables.conf"
"""The unit's shipped firewall."""

MUNICIPALITY_FIREWALL = (("udp", 3478), ("tcp", 443))
"""What a municipality's firewall typically lets out: the relay's STUN/TURN and HTTPS."""
TCP_443_ONLY = (("tcp", 443),)
"""A firewall that lets only web traffic out: no UDP at all."""


@dataclass(frozen=True)
class Profile:
    """How the networks between unit and staff behave."""

    name: str
    carrier_nat: NatKind = "cone"
    staff_allow_out: Sequence[tuple[str, int]] | None = None
    """``None``: the municipality's NAT lets everything out."""
    delay_ms: float = 0.0
    loss_percent: int = 0
    unit_firewall: bool = False
    """Load the unit's shipped nftables ruleset, with the relay as its TURN server."""


@dataclass
class Topology:
    """The namespaces of one test bed, by role."""

    net: TestNet
    profile: Profile
    unit: Namespace
    staff: Namespace
    relay: Namespace
    home: Namespace
    carrier: Namespace
    municipality: Namespace
    internet: Namespace


def build(net: TestNet, profile: Profile) -> Topology:
    """Make the namespaces, links, routes and rules of the picture above inside ``net``."""
    internet = net.add("internet", router=True)
    relay = net.add("relay")
    carrier = net.add("carrier", router=True)
    home = net.add("home", router=True)
    unit = net.add("unit")
    municipality = net.add("muni", router=True)
    staff = net.add("staff")

    net.link(internet, "r0", "198.18.1.1/24", relay, "eth0", f"{RELAY_IP}/24")
    net.link(internet, "c0", "198.18.2.1/24", carrier, "wan", f"{CARRIER_WAN_IP}/24")
    net.link(internet, "m0", "198.18.3.1/24", municipality, "wan", f"{MUNICIPALITY_WAN_IP}/24")
    net.link(carrier, "lan", "100.64.1.1/24", home, HOME_UPLINK, "100.64.1.2/24")
    net.link(home, "lan", "100.100.1.1/24", unit, "eth0", f"{UNIT_IP}/24")
    net.link(municipality, "lan", "100.110.1.1/24", staff, "eth0", f"{STAFF_IP}/24")

    net.default_route(relay, "198.18.1.1")
    net.default_route(carrier, "198.18.2.1")
    net.default_route(municipality, "198.18.3.1")
    net.default_route(home, "100.64.1.1")
    net.default_route(unit, "100.100.1.1")
    net.default_route(staff, "100.110.1.1")

    net.nat(home, HOME_UPLINK)
    net.nat(carrier, "wan", kind=profile.carrier_nat)
    net.nat(municipality, "wan", allow_out=profile.staff_allow_out)
    if profile.delay_ms or profile.loss_percent:
        impair_link(
            net,
            internet,
            "c0",
            "198.18.2.0/24",
            delay_ms=profile.delay_ms,
            loss_percent=profile.loss_percent,
        )
    if profile.unit_firewall:
        unit.run("nft", "-f", "-", stdin=unit_ruleset(RELAY_IP))
    return Topology(net, profile, unit, staff, relay, home, carrier, municipality, internet)


def unit_ruleset(relay_ip: str, broker: tuple[str, Sequence[int]] | None = None) -> str:
    """The unit's shipped ruleset with ``relay_ip`` as its only TURN address and, if given,
    ``broker`` (address, ports) as its broker."""
    definitions = {"TURN_V4": f"{{ {relay_ip} }}"}
    if broker is not None:
        address, ports = broker
        definitions["BROKER_V4"] = f"{{ {address} }}"
        definitions["BROKER_PORTS"] = "{ " + ", ".join(str(p) for p in ports) + " }"
    text = UNIT_RULESET.read_text()
    for name, value in definitions.items():
        text, count = re.subn(
            rf"^define {name} = .*$", f"define {name} = {value}", text, flags=re.M
        )
        if count != 1:
            raise ValueError(f"{UNIT_RULESET} has no single {name} definition")
    return text

"""Protocol v1's wire contract, frozen in ``protocol/wire-v1.json``: what units and central of
different releases rely on while a fleet is updated unit by unit.

Both sides refuse unknown keys, and central is updated before the units. So, for a message:

* that **central reads** (a unit writes it: state, health, events, signal, renew), a new field
  must be optional (older units do not send it), no field or accepted value may go away (older
  units still send them), and an optional field may not become required;
* that **units read** (central writes it: signal, config, cert, command, message, receipt,
  update, and the claims of every token central signs for units: ``signed/…``), nothing may be
  added — neither a field nor a value (an older unit refuses what it does
  not know) — and nothing an older unit requires may go away.

Anything else needs a new message type on a new channel, or protocol v2. ``python
scripts/wire_contract.py`` checks the models against the frozen contract (``make lint``);
``--update`` freezes a change that keeps these rules.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from vaka.protocol.messages import CHANNEL_TYPES
from vaka.protocol.topics import UNIT_READS, UNIT_WRITES
from vaka.provisioning.bundles import UnitConfigBundle
from vaka.provisioning.caller_picture import CallerPicture
from vaka.provisioning.escalation import EscalationClaims
from vaka.provisioning.messages import SignedMessage
from vaka.provisioning.orders import Order
from vaka.provisioning.people import People
from vaka.provisioning.tickets import TicketClaims
from vaka.provisioning.updates import UpdateOrder
from vaka.provisioning.viewing_log import ViewingLog

#: the claims of the tokens central signs and units check (read by units only)
SIGNED: dict[str, type[BaseModel]] = {
    "signed/config": UnitConfigBundle,
    "signed/caller-picture": CallerPicture,
    "signed/escalation": EscalationClaims,
    "signed/message": SignedMessage,
    "signed/order": Order,
    "signed/people": People,
    "signed/ticket": TicketClaims,
    "signed/update": UpdateOrder,
    "signed/viewing-log": ViewingLog,
}
FROZEN = Path(__file__).resolve().parent.parent / "protocol" / "wire-v1.json"
Fields = dict[str, dict[str, Any]]


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _values(schema: dict[str, Any]) -> list[Any] | None:
    if "const" in schema:
        return [schema["const"]]
    if "enum" in schema:
        return sorted(schema["enum"], key=str)
    return None


def _walk(
    schema: dict[str, Any], defs: dict[str, Any], path: str, required: bool, out: Fields
) -> None:
    schema = _resolve(schema, defs)
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        values: list[Any] = []
        for option in options:
            option = _resolve(option, defs)
            values += _values(option) or []
            _walk_inside(option, defs, path, out)
        if path:
            out[path] = {"required": required, "values": sorted(set(values), key=str) or None}
        return
    if path:
        out[path] = {"required": required, "values": _values(schema)}
    _walk_inside(schema, defs, path, out)


def _walk_inside(schema: dict[str, Any], defs: dict[str, Any], path: str, out: Fields) -> None:
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        _walk(schema["items"], defs, f"{path}[]", True, out)
    needed = set(schema.get("required", []))
    for name, sub in schema.get("properties", {}).items():
        _walk(sub, defs, f"{path}.{name}" if path else name, name in needed, out)


def current() -> dict[str, Any]:
    """Every channel's message as ``{path: {required, values}}``."""
    models = {channel.value: model for channel, model in CHANNEL_TYPES.items()} | SIGNED
    contract: dict[str, Any] = {}
    for name, model in sorted(models.items()):
        schema = model.model_json_schema()
        fields: Fields = {}
        _walk(schema, schema.get("$defs", {}), "", True, fields)
        contract[name] = fields
    return contract


def breaks(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What in ``new`` an older peer holding ``old`` could not read, or would send in vain."""
    found: list[str] = []
    for channel in sorted(set(old) - set(new)):
        found.append(f"{channel}: the channel is gone, older peers still use it")
    for channel in sorted(set(old) & set(new)):
        central_reads = channel in {c.value for c in UNIT_WRITES}
        units_read = channel in {c.value for c in UNIT_READS} or channel in SIGNED
        was, now = old[channel], new[channel]
        for path in sorted(set(now) - set(was)):
            if units_read:
                found.append(f"{channel}: {path} is new, and older units refuse unknown fields")
            elif now[path]["required"]:
                found.append(f"{channel}: {path} is new and required; older units do not send it")
        for path in sorted(set(was) - set(now)):
            if central_reads:
                found.append(f"{channel}: {path} is gone, and older units still send it")
            elif was[path]["required"]:
                found.append(f"{channel}: {path} is gone, and older units need it")
        for path in sorted(set(was) & set(now)):
            before, after = was[path], now[path]
            if central_reads and after["required"] and not before["required"]:
                found.append(f"{channel}: {path} became required; older units may leave it out")
            if before["values"] is not None and after["values"] is not None:
                added = set(map(str, after["values"])) - set(map(str, before["values"]))
                gone = set(map(str, before["values"])) - set(map(str, after["values"]))
                if units_read and added:
                    found.append(
                        f"{channel}: {path} has values older units refuse: {sorted(added)}"
                    )
                if central_reads and gone:
                    found.append(f"{channel}: {path} refuses what older units send: {sorted(gone)}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--update", action="store_true", help="freeze the models as they are now")
    args = parser.parse_args(argv)
    new = current()
    old = json.loads(FROZEN.read_text()) if FROZEN.exists() else {}
    found = breaks(old, new)
    if found:
        print("wire_contract: changes that older units or central could not follow:")
        for line in found:
            print(f"  {line}")
        print(
            "  (see scripts/wire_contract.py: a new message type on a new channel, or protocol v2)"
        )
        return 1
    if args.update or not FROZEN.exists():
        FROZEN.write_text(json.dumps(new, indent=1, sort_keys=True) + "\n")
        print(f"wire_contract: frozen in {FROZEN.name}")
        return 0
    if new != old:
        print(
            "wire_contract: a compatible change; freeze it with scripts/wire_contract.py --update"
        )
        return 1
    print(f"wire_contract: the models keep {FROZEN.name} ({len(new)} messages and tokens)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

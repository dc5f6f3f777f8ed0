"""Protocol v1's frozen wire contract (``protocol/wire-v1.json``, ``scripts/wire_contract.py``):
the models keep it, and a change that an older unit or central could not follow is named."""

import copy
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "wire_contract", ROOT / "scripts/wire_contract.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


wire = _script()


def _changed(edit: Any) -> list[str]:
    old = wire.current()
    new = copy.deepcopy(old)
    edit(new)
    return list(wire.breaks(old, new))


def test_the_models_keep_the_frozen_contract() -> None:
    assert wire.main([]) == 0


def test_what_older_peers_can_follow_passes() -> None:
    # A unit's new optional health field: central (updated first) reads it, older units omit it.
    assert (
        _changed(
            lambda c: c["health"].update({"payload.fan_rpm": {"required": False, "values": None}})
        )
        == []
    )
    # A new kind of event: central knows it before any unit sends it.
    assert _changed(lambda c: c["events"]["payload.kind"]["values"].append("door")) == []
    # A field of a central-written message that older units never needed goes away.
    assert _changed(lambda c: c["signal/in"].pop("payload.ticket")) == []


def test_what_older_peers_cannot_follow_is_named() -> None:
    required = {"required": True, "values": None}
    assert _changed(lambda c: c["health"].update({"payload.fan_rpm": required})) == [
        "health: payload.fan_rpm is new and required; older units do not send it"
    ]
    assert _changed(
        lambda c: c["signed/config"].update({"night_light": required | {"required": False}})
    ) == ["signed/config: night_light is new, and older units refuse unknown fields"]
    assert _changed(lambda c: c["events"].pop("payload.detail")) == [
        "events: payload.detail is gone, and older units still send it"
    ]
    assert _changed(lambda c: c["events"]["payload.kind"]["values"].remove("button")) == [
        "events: payload.kind refuses what older units send: ['button']"
    ]
    assert _changed(lambda c: c["signal/in"]["type"]["values"].append("wave")) == [
        "signal/in: type has values older units refuse: ['wave']"
    ]
    assert _changed(lambda c: c.pop("update")) == [
        "update: the channel is gone, older peers still use it"
    ]

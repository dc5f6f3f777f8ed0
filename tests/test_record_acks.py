"""Central acknowledges a message to the broker only after it is committed, in arrival order; a
handler that raises is counted and its message acknowledged (dropped); ingest never stalls on a
batch that cannot be written. (The real-broker proof is tests/test_record_kills.py.)"""

import asyncio
from pathlib import Path
from typing import Any

from vaka.central.broker.mqtt import CentralLink
from vaka.central.fleet.ingest import MAX_WRITE_FAILURES, FleetIngest
from vaka.central.fleet.store import SqlFleetStore
from vaka.central.settings.config import MqttSection
from vaka.errors import RegistryError
from vaka.protocol.messages import EventMessage, EventPayload, encode


class FakePaho:
    def __init__(self) -> None:
        self.acked: list[int] = []
        self.writes = 0

    def ack(self, mid: int, qos: int) -> None:
        self.acked.append(mid)
        self.writes += 1

    def _packet_queue(self, command: int, packet: bytes, mid: int, qos: int) -> None:
        """Several PUBACKs in one packet: 0x40, 2, then the message id, each."""
        assert command == 0x40 and len(packet) % 4 == 0
        for at in range(0, len(packet), 4):
            assert packet[at : at + 2] == bytes([0x40, 2])
            self.acked.append(int.from_bytes(packet[at + 2 : at + 4], "big"))
        self.writes += 1


class FakeClient:
    def __init__(self) -> None:
        self._client = FakePaho()


def settings(tmp_path: Path) -> MqttSection:
    return MqttSection(server_ca=tmp_path / "ca", cert=tmp_path / "c", key=tmp_path / "k")


async def test_acks_wait_for_the_commit_and_keep_the_arrival_order(tmp_path: Path) -> None:
    commits: dict[int, asyncio.Future[None]] = {}
    loop = asyncio.get_running_loop()

    def sink(topic: str, payload: Any) -> object:
        mid = int(topic.rsplit("/", 2)[-2][1:])
        if mid % 2:  # odd ones wait for a commit, even ones are done at once
            commits[mid] = loop.create_future()
            return commits[mid]
        return None

    def broken(topic: str, payload: Any) -> object:
        raise RuntimeError("a handler bug")

    link = CentralLink(settings(tmp_path), sink, signals=broken)
    client = FakeClient()
    link.main.client = client  # type: ignore[assignment]
    for mid in range(1, 5):
        link.main.dispatch(f"vaka/v1/dev/u{mid}/events", b"{}", mid, 1)
    link.main.dispatch("vaka/v1/dev/u5/signal/out", b"{}", 5, 1)
    assert client._client.acked == []  # 1 is not committed: nothing after it either
    commits[3].set_result(None)
    await asyncio.sleep(0)
    assert client._client.acked == []
    commits[1].set_result(None)
    await asyncio.sleep(0)
    assert client._client.acked == [1, 2, 3, 4, 5]  # the failing handler's message dropped too
    assert client._client.writes == 1  # all five PUBACKs in one write
    assert link.handler_failures == {"signal/out": 1}
    assert link.stats()["unacked"] == 0


class FailingStore(SqlFleetStore):
    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls = 0

    def apply_states(self, updates: Any) -> None:
        self.calls += 1
        raise self.error


def an_event() -> bytes:
    return encode(EventMessage(payload=EventPayload(kind="info", detail={"n": 1})))


async def test_a_batch_that_keeps_failing_on_a_bug_is_dropped_not_stalling(
    monkeypatch: Any,
) -> None:
    monkeypatch.setattr(asyncio, "sleep", _no_sleep)
    store = FailingStore(RuntimeError("a bug"))
    ingest = FleetIngest(store)
    committed = ingest.receive("vaka/v1/dev/u-1/events", an_event())
    assert committed is not None
    for _ in range(MAX_WRITE_FAILURES):
        await ingest.flush()
    await asyncio.wait_for(committed, 1)  # acknowledged: the broker will not send it again
    assert store.calls == MAX_WRITE_FAILURES and ingest.dropped == 1


async def test_a_database_that_is_away_keeps_the_batch_unacknowledged(monkeypatch: Any) -> None:
    monkeypatch.setattr(asyncio, "sleep", _no_sleep)
    store = FailingStore(RegistryError("database away"))
    ingest = FleetIngest(store)
    committed = ingest.receive("vaka/v1/dev/u-1/events", an_event())
    assert committed is not None
    for _ in range(MAX_WRITE_FAILURES + 2):
        await ingest.flush()
    assert not committed.done() and ingest.dropped == 0  # type: ignore[attr-defined]
    assert ingest.receive("vaka/v1/dev/u-1/events", b"\xff") is None  # poison: dropped at once


async def _no_sleep(_s: float) -> None:
    return None

"""What the A/B card's update test (``tests/test_image_rauc_update.py``) builds and reads around
the guest: the three bundles made from the built root, central's HTTPS front, the guest's mount
table, and central's view of the unit (its versions row, its roll-out state, its update audit)."""

import asyncio
import re
import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.abcard import (
    BROKEN_AGENT,
    COUNTED_SERVICE,
    helper_dropin,
    make_bundle,
    mark_good_dropin,
    plain,
    slot_root,
)
from tests.imagetools import (
    UNIT,
    Built,
)
from tests.test_image_bundle import Signer
from vaka.central.service import CentralService
from vaka.central.updates.bundles import sha256_of
from vaka.central.updates.rollouts import BundleSpec
from vaka.provisioning.localpki import LocalPki


@dataclass(frozen=True)
class Bundles:
    """The bundles central serves: ``v2``, ``v3`` (broken agent, 60 s deadline) and ``foreign``
    (v2 re-signed by another authority), in ``directory``."""

    directory: Path
    v2: Path
    v3: Path
    foreign: Path

    def spec(self, bundle: Path, version: str) -> BundleSpec:
        return BundleSpec(version, sha256_of(bundle), bundle.stat().st_size)


def update_bundles(built: Built, directory: Path, signer: Signer, stranger: Signer) -> Bundles:
    """The three bundles, made from the built root with debugfs changes (no second build)."""
    content = directory / "bundles"
    content.mkdir()
    dropins = "/etc/systemd/system/vaka-mark-good.service.d"
    counted = directory / "vaka-test-counted.service"
    counted.write_text(COUNTED_SERVICE)
    v2 = slot_root(
        built,
        directory,
        "2",
        {
            f"{dropins}/": (directory, "755"),
            f"{dropins}/50-test.conf": (mark_good_dropin(directory, "2", None), "644"),
            "/etc/systemd/system/vaka-test-counted.service": (counted, "644"),
            "/etc/systemd/system/vaka-update-install.service.d/": (directory, "755"),
            "/etc/systemd/system/vaka-update-install.service.d/50-test.conf": (
                helper_dropin(directory),
                "644",
            ),
        },
    )
    update = make_bundle(v2, content / "vaka-2.raucb", signer, "2")
    broken = directory / "vaka-agent"
    broken.write_text(BROKEN_AGENT)
    v3 = slot_root(
        built,
        directory,
        "3",
        {
            f"{dropins}/": (directory, "755"),
            f"{dropins}/50-test.conf": (mark_good_dropin(directory, "3", 60), "644"),
            "/opt/vaka/venv/bin/vaka-agent": (broken, "755"),
        },
    )
    broken_bundle = make_bundle(v3, content / "vaka-3.raucb", signer, "3")
    foreign = content / "foreign.raucb"
    resigned = subprocess.run(
        ["rauc", "resign", "--cert", str(stranger.cert), "--key", str(stranger.key),
         "--keyring", str(signer.ca), "--signing-keyring", str(stranger.ca),
         str(update), str(foreign)],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert resigned.returncode == 0, resigned.stderr
    for bundle in (update, broken_bundle, foreign):
        print(f"{bundle.name}: {bundle.stat().st_size / 2**20:.0f} MiB")
    return Bundles(content, update, broken_bundle, foreign)


@asynccontextmanager
async def https_front(upstream: str, port: int, pki: LocalPki) -> AsyncIterator[list[str]]:
    """Central's HTTP behind TLS on ``port`` of this machine's loopback (the guest's
    ``10.0.2.2``), as a site puts central behind its HTTPS proxy. The certificate is the broker's:
    the site's server CA signed it and it names ``10.0.2.2``, so the unit checks it against the
    CA it already trusts. Yields each request's method, path and ``Range``."""
    seen: list[str] = []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.broker_cert, pki.broker_key)
    client = aiohttp.ClientSession()

    async def forward(request: web.Request) -> web.StreamResponse:
        seen.append(f"{request.method} {request.path} {request.headers.get('Range', '')}".strip())
        headers = {k: v for k, v in request.headers.items() if k in ("Authorization", "Range")}
        async with client.get(upstream + request.path_qs, headers=headers) as answer:
            response = web.StreamResponse(status=answer.status)
            for name in ("Content-Length", "Content-Range", "Content-Type", "Accept-Ranges"):
                if name in answer.headers:
                    response.headers[name] = answer.headers[name]
            await response.prepare(request)
            async for chunk in answer.content.iter_chunked(1 << 20):
                await response.write(chunk)
            await response.write_eof()
            return response

    app = web.Application()
    app.router.add_get("/{tail:.*}", forward)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    try:
        yield seen
    finally:
        await runner.cleanup()
        await client.close()


def mount_table(console: str) -> dict[str, list[str]]:
    """The first boot's ``findmnt`` of ``/run`` and the download directory (the status
    service's, one console line each, ``[time] findmnt[pid]: TARGET SOURCE FSTYPE SIZE
    OPTIONS``, other services' lines between them): target -> source, type, size in bytes,
    options."""
    found = re.search(r"MOUNTS-BEGIN(.*?)MOUNTS-END", plain(console), re.S)
    assert found, "no mount table on the console"
    table = {}
    for line in re.findall(r"findmnt\[\d+\]: (/\S*(?:\s+\S+){4})", found.group(1)):
        fields = line.split()
        table[fields[0]] = fields[1:5]
    assert set(table) >= {"/run", "/var/lib/vaka/update"}, found.group(1)
    return table


def unit_row(central: CentralService) -> dict[str, Any] | None:
    """The unit's row in central's fleet view of versions (``GET /api/fleet/versions``)."""
    rows = [r for r in central.rollouts.versions() if r["unit"] == UNIT]
    return rows[0] if rows else None


def unit_state(central: CentralService, rollout: int) -> dict[str, Any]:
    """The unit's state in a roll-out (``GET /api/updates/{id}``)."""
    state: dict[str, Any] = central.rollouts.status(rollout)["units"][0]
    return state


async def audit_kinds(central: CentralService) -> list[tuple[str, dict[str, Any]]]:
    entries = await asyncio.to_thread(central.audit.entries)
    return [(e.kind, e.detail) for e in entries if e.unit == UNIT and e.kind.startswith("update_")]

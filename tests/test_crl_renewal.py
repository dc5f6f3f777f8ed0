"""The CRL is re-issued when it is due, not at every start of central.

Every re-issue makes the broker reload (SIGHUP), and Debian 12's Mosquitto (2.0.11) disconnects
every offline persistent session again on a reload, putting it on its session-expiry list a
second time; when that client connects again the broker crashes in ``session_expiry__remove``
(seen in the fleet bench: central killed, restarted, its start re-issued the CRL, the broker
reloaded and crashed as central's sessions came back). A central that starts while the CRL is
current leaves the broker alone.
"""

import asyncio
import datetime as dt
from pathlib import Path

from vaka.devstack.polling import wait_for
from vaka.devstack.stack import LocalStack
from vaka.provisioning import pki
from vaka.provisioning.localpki import LocalPki


def test_a_crl_is_current_only_if_it_is_the_cas_with_the_same_serials_and_time_left(
    tmp_path: Path,
) -> None:
    local = LocalPki(tmp_path / "pki").ensure()
    ca, other = local.client_ca(), local._ca("claim-ca")
    path = tmp_path / "crl.pem"
    revoked = [(0x1234, 1_700_000_000.0)]
    assert not pki.crl_is_current(ca, revoked, path)  # none yet
    pki.write_crl(ca, revoked, path)
    assert pki.crl_is_current(ca, revoked, path)
    assert not pki.crl_is_current(ca, [*revoked, (0x99, 1_700_000_001.0)], path)  # a revocation
    assert not pki.crl_is_current(ca, [], path)
    assert not pki.crl_is_current(other, revoked, path)  # another issuer
    pki.write_crl(ca, revoked, path, lifetime=dt.timedelta(days=3))
    assert not pki.crl_is_current(ca, revoked, path)  # less than half of 7 days left
    path.write_text("not a CRL")
    assert not pki.crl_is_current(ca, revoked, path)


async def test_a_restarted_central_does_not_make_the_broker_reload(stack: LocalStack) -> None:
    """The stack's CRL is current (its issuer's, nothing revoked, a week left): central's start
    leaves it, and so does its start after a ``kill -9``. Its sessions come back with no reload
    before them (each start used to make one), and the broker is still running."""
    log = stack.broker.log
    reloads = log().count("Reloading config.")
    process = stack.start_central_process()
    await wait_for(lambda: "as central-1-health" in log(), 30, what="central's health session")
    await asyncio.to_thread(process.kill)
    await asyncio.to_thread(process.start)
    await wait_for(
        lambda: log().count("as central-1-health") >= 2, 30, what="central's sessions back"
    )
    assert log().count("Reloading config.") == reloads
    assert "CRL re-issued" not in process.log()
    assert stack.broker.process is not None and stack.broker.process.running


async def test_central_re_issues_a_crl_that_is_not_its_own(stack: LocalStack) -> None:
    """A CRL that is not current (here: half its week gone) is re-issued at start, and the
    broker reloads to read it."""
    issuer = stack.broker.pki.client_ca()
    pki.write_crl(issuer, [], stack.broker.crl_path, lifetime=dt.timedelta(days=3))
    reloads = stack.broker.log().count("Reloading config.")
    process = stack.start_central_process()
    await wait_for(lambda: "CRL re-issued" in process.log(), 30, what="central's new CRL")
    await wait_for(
        lambda: stack.broker.log().count("Reloading config.") > reloads, 10, what="the reload"
    )
    crl = pki.x509.load_pem_x509_crl(stack.broker.crl_path.read_bytes())
    assert crl.next_update_utc is not None
    assert crl.next_update_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=6)

"""The A/B card both RAUC test modules use (``tests/test_image_rauc.py``,
``tests/test_image_rauc_update.py``), built once per session: the project's update signer, the
port of central's HTTPS front, and the card itself (a pytest plugin, like ``tests.imagetools``)."""

import os
import re
import shutil
import tomllib
from collections.abc import Iterator

import pytest
import tomli_w

from tests.imagetools import PROFILE, QEMU_HOST, Built, build_card, site_files, site_nftables
from tests.test_image_bundle import Signer, make_signer
from vaka.devstack.ports import free_port
from vaka.provisioning.localpki import LocalPki


@pytest.fixture(scope="session")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Signer:
    """The project's update signer: its CA goes into the image as RAUC's keyring."""
    return make_signer(tmp_path_factory.mktemp("rauc-signer") / "project", "Vaka updates (test)")


@pytest.fixture(scope="session")
def bundle_port() -> int:
    """The port of central's HTTPS front on this machine (the bundle URL in the orders), fixed at
    build time: the card's firewall lets the unit reach it on the broker's address."""
    return free_port()


def bundle_rules(ruleset: str, port: int) -> str:
    """The site's bundle server in the ruleset's ``BUNDLE_*`` lines: central's HTTPS front on
    the QEMU host, on its own port (not one of the broker's)."""
    ruleset = re.sub(
        r"(?m)^define BUNDLE_V4 = .*$", f"define BUNDLE_V4 = {{ {QEMU_HOST} }}", ruleset
    )
    return re.sub(r"(?m)^define BUNDLE_PORTS = .*$", f"define BUNDLE_PORTS = {{ {port} }}", ruleset)


@pytest.fixture(scope="session")
def built_ab(
    image_pki: LocalPki,
    qemu_port: int,
    bundle_port: int,
    signer: Signer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Built]:
    """The amd64 variant with two root slots and GRUB, built once for the session. Its agent
    installs through RAUC although its devices are simulated (QEMU has no camera or GPIO, but
    real slots), downloads without a rate limit, and may reach central's HTTPS on the host. Its
    ``download_dir`` is the image's own (the data partition), not the site's."""
    base = tmp_path_factory.mktemp("image-ab")
    site = site_files(image_pki, base / "site", qemu_port)
    shutil.copy(signer.ca, site / "rauc-keyring.pem")
    config = tomllib.loads((site / "agent.toml").read_text())
    bundle_server = f"{QEMU_HOST}:{bundle_port}"
    config["update"] = {"installer": "rauc", "max_rate_kbps": 0, "servers": [bundle_server]}
    (site / "agent.toml").write_text(tomli_w.dumps(config))
    (site / "nftables.conf").write_text(bundle_rules(site_nftables(qemu_port), bundle_port))
    out = base / "out"
    try:
        yield build_card(site, out, PROFILE, "--ab")
    finally:
        if os.environ.get("VAKA_IMAGE_KEEP") != "1":
            shutil.rmtree(out, ignore_errors=True)

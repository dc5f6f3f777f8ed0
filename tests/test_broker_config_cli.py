"""``vaka-central broker-config``: Mosquitto by default, an EMQX cluster node on request."""

from pathlib import Path

import pytest
from pyhocon import ConfigFactory

from vaka.central.cli import main
from vaka.provisioning.localpki import LocalPki


def _args(pki: LocalPki, out: Path, *extra: str) -> list[str]:
    return [
        "broker-config",
        "--out",
        str(out),
        "--client-ca",
        str(pki.client_ca_cert),
        "--server-cert",
        str(pki.broker_cert),
        "--server-key",
        str(pki.broker_key),
        "--claim-port",
        "8884",
        "--claim-ca",
        str(pki.claim_ca_cert),
        "--central-identity",
        "central-1",
        "--central-identity",
        "central-2",
        *extra,
    ]


def test_mosquitto_is_the_default(
    pki: LocalPki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_args(pki, tmp_path, "--crl", str(pki.crl_path))) == 0
    assert capsys.readouterr().out == f"wrote {tmp_path / 'mosquitto.conf'}\n"
    conf = (tmp_path / "mosquitto.conf").read_text()
    assert "listener 8883 0.0.0.0" in conf and "listener 8884 0.0.0.0" in conf
    assert "use_identity_as_username true" in conf and "set_tcp_nodelay true" in conf
    assert "user central-2\ntopic readwrite vaka/v1/#" in (tmp_path / "acl").read_text()
    assert not (tmp_path / "emqx.conf").exists()


def test_emqx_cluster_node(
    pki: LocalPki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes = ["emqx@10.0.0.11", "emqx@10.0.0.12", "emqx@10.0.0.13"]
    seeds = [arg for node in nodes for arg in ("--emqx-seed", node)]
    argv = _args(pki, tmp_path, "--kind", "emqx", "--emqx-node", nodes[2], *seeds)
    assert main(argv) == 0
    assert capsys.readouterr().out == f"wrote {tmp_path / 'emqx.conf'}\n"
    conf = ConfigFactory.parse_file(str(tmp_path / "emqx.conf"))
    assert conf["node"]["name"] == nodes[2]
    assert list(conf["cluster"]["static"]["seeds"]) == nodes
    assert sorted(conf["listeners"]["ssl"]) == ["default", "enrol"]
    assert conf["listeners"]["ssl"]["default"]["bind"] == "0.0.0.0:8883"
    acl = (tmp_path / "acl.conf").read_text()
    assert '{allow, {username, "central-2"}, all, ["vaka/v1/#"]}.' in acl
    assert acl.rstrip().endswith("{deny, all}.")
    assert (tmp_path / "broker.key").stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "mosquitto.conf").exists()


def test_emqx_refuses_a_crl_file_with_a_reason(
    pki: LocalPki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _args(pki, tmp_path, "--kind", "emqx", "--crl", str(pki.crl_path))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("vaka-central: broker configuration: EMQX does not read a CRL file")
    assert "banned list" in err
    assert not (tmp_path / "emqx.conf").exists()


def test_unknown_kind_is_refused(pki: LocalPki, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(_args(pki, tmp_path, "--kind", "rabbitmq"))
    assert exit_info.value.code == 2

"""TLS contexts for MQTT clients (units and central alike)."""

import ssl
from pathlib import Path

from vaka.errors import ConfigError


def client_tls_context(server_ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    """A TLS 1.2+ client context that verifies the broker and presents our certificate."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(server_ca))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as err:
        raise ConfigError(f"cannot load client certificate {cert} / key {key}: {err}") from err
    return ctx

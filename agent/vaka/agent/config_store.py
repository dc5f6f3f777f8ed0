"""The unit's last good config bundle: verified before it counts, kept across restarts.

:class:`ConfigStore` holds the active :class:`~vaka.provisioning.bundles.UnitConfigBundle` and
its signed token. A new token is verified (central's pinned key, this unit's id, a higher
version, this unit's profile) and only then written, atomically and readable by the agent alone,
to ``config.jws`` in the credentials directory — the one persistent file besides the unit's key
and certificate. At start the stored token is verified again; a corrupt or foreign file is
reported and ignored, and the unit waits for central's retained bundle.

Anything refused raises :class:`~vaka.provisioning.bundles.BadBundle` (or
:class:`~vaka.errors.ConfigError` if the file cannot be written) and changes nothing.
"""

import contextlib
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from joserfc.jwk import OKPKey

from vaka.errors import ConfigError
from vaka.provisioning.bundles import BadBundle, UnitConfigBundle, verify_bundle

log = logging.getLogger(__name__)

CONFIG_FILE = "config.jws"

Listener = Callable[[UnitConfigBundle], None]


class ConfigStore:
    """The active config bundle of one unit.

    ``directory`` is the credentials directory (``None``: memory only, e.g. ``--simulate``
    without one); ``key`` central's pinned config-signing public key (``None``: no bundle is
    accepted, each refusal says why); ``profile``, when given, must match the bundle's.
    Safe to use from several threads; listeners run on the thread that applied the bundle.
    """

    def __init__(
        self,
        directory: Path | None,
        key: OKPKey | None,
        device_id: str,
        *,
        profile: str | None = None,
    ) -> None:
        self.directory = directory
        self.key = key
        self.device_id = device_id
        self.profile = profile
        #: Why the stored bundle was not used at start (``None``: it was, or there was none).
        self.load_problem: str | None = None
        self._active: UnitConfigBundle | None = None
        self._token: str | None = None
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()
        self._load()

    # ---------------------------------------------------------------- reading

    @property
    def path(self) -> Path | None:
        """Where the bundle is kept, ``None`` in memory-only mode."""
        return None if self.directory is None else self.directory / CONFIG_FILE

    @property
    def active(self) -> UnitConfigBundle | None:
        """The bundle in force, ``None`` before the first one."""
        return self._active

    @property
    def version(self) -> int:
        """The active bundle's version; 0 when there is none."""
        active = self._active
        return 0 if active is None else active.version

    def is_active(self, token: str) -> bool:
        """Whether ``token`` is exactly the bundle in force (a retained re-delivery)."""
        return token == self._token

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with each newly applied bundle; returns a function that unsubscribes.

        Listeners run on the thread that called :meth:`apply` and must be quick and thread-safe.
        """
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    # ---------------------------------------------------------------- changing

    def check(self, token: str, current_version: int | None = None) -> UnitConfigBundle:
        """Verify ``token`` against this unit without applying it; raises :class:`BadBundle`."""
        if self.key is None:
            raise BadBundle("this unit has no pinned config key ([trust] config_key)")
        current = self.version if current_version is None else current_version
        bundle = verify_bundle(token, self.key, self.device_id, current)
        if self.profile is not None and bundle.profile != self.profile:
            raise BadBundle(
                f"config is for a {bundle.profile} unit; this unit runs the {self.profile} profile"
            )
        return bundle

    def apply(self, token: str, announced_version: int | None = None) -> UnitConfigBundle:
        """Verify, persist and activate ``token``; tell the listeners. Returns the bundle.

        ``announced_version`` is the version the config message claims; it must match the
        signed one. The exact active token again is a no-op. Blocks on file I/O.
        """
        with self._lock:
            if self._active is not None and token == self._token:
                return self._active
            bundle = self.check(token)
            if announced_version is not None and announced_version != bundle.version:
                raise BadBundle(
                    f"config message says version {announced_version} "
                    f"but the signed bundle is version {bundle.version}"
                )
            self._persist(token)
            self._active, self._token = bundle, token
        log.info("config version %d active", bundle.version)
        for listener in list(self._listeners):
            try:
                listener(bundle)
            except Exception:
                log.exception("config listener failed")
        return bundle

    # ---------------------------------------------------------------- the file

    def _persist(self, token: str) -> None:
        """Write ``token`` to :attr:`path` atomically (temporary file, fsync, rename), mode 0600."""
        path = self.path
        if path is None:
            return
        assert self.directory is not None
        tmp: str | None = None
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            # mkstemp creates the file 0600, so the token is never readable by others.
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{CONFIG_FILE}.", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="ascii") as out:
                out.write(token)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
            tmp = None
            _fsync_directory(self.directory)
        except OSError as err:
            raise ConfigError(
                f"cannot store config in {self.directory}: {err.strerror or err}"
            ) from None
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    def _load(self) -> None:
        """Take the stored bundle if it still verifies; report and ignore it otherwise."""
        path = self.path
        if path is None:
            return
        try:
            token = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            log.info("no stored config in %s; waiting for central's bundle", self.directory)
            return
        except (OSError, UnicodeDecodeError) as err:
            self._ignore(path, getattr(err, "strerror", None) or str(err))
            return
        try:
            bundle = self.check(token, current_version=0)
        except BadBundle as err:
            self._ignore(path, str(err))
            return
        self._active, self._token = bundle, token
        log.info("config version %d restored from %s", bundle.version, path)

    def _ignore(self, path: Path, reason: str) -> None:
        self.load_problem = f"stored config {path} ignored: {reason}"
        log.warning("%s", self.load_problem)


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (best effort where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)

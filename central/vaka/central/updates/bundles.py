"""The update bundles central serves to units, from one configured directory (``[updates]
bundle_dir``), found by their SHA-256.

Each file's hash is computed once and kept while its size and modification time stay the same:
a directory of a few 450 MB bundles is hashed at the first look-up, not at every download.
"""

import hashlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Bundle:
    """One bundle file: where it is, its hash and size."""

    path: Path
    sha256: str
    size: int


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


class BundleShelf:
    """The bundles in ``directory`` (``None``: central serves none; orders name static URLs)."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._known: dict[Path, tuple[int, float, str]] = {}
        self._lock = threading.Lock()

    def find(self, sha256: str) -> Bundle | None:
        """The bundle with this hash, if the directory holds one (blocks: hashes new files)."""
        if self.directory is None or not self.directory.is_dir():
            return None
        for path in sorted(self.directory.iterdir()):
            if not path.is_file() or path.name.startswith("."):
                continue
            stat = path.stat()
            with self._lock:
                known = self._known.get(path)
            if known is None or known[:2] != (stat.st_size, stat.st_mtime):
                digest = sha256_of(path)
                with self._lock:
                    self._known[path] = (stat.st_size, stat.st_mtime, digest)
                known = (stat.st_size, stat.st_mtime, digest)
            if known[2] == sha256:
                return Bundle(path, sha256, stat.st_size)
        return None

"""Private files and folders: explicit modes that no umask changes, and never wider.

What Cadence creates for its own use (the store, token caches, the folders it makes
for them) is readable by its owner only: files 0600, folders 0700, set with ``chmod``
after creation so a permissive umask cannot widen them. A file or folder that already
exists keeps the mode its owner gave it: a rewrite may narrow it to 0600, never widen
it. A rewrite goes through a temporary file beside the target, removed on any failure
(a full disk, a signal), so nothing half-written or stray is left behind.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from agent.core.errors import ConfigError

#: the mode of a file Cadence creates for itself
PRIVATE_FILE = 0o600
#: the mode of a folder Cadence creates for its files
PRIVATE_FOLDER = 0o700


def private_folders(folder: Path, mode: int = PRIVATE_FOLDER) -> None:
    """Create ``folder`` and its missing parents with exactly ``mode``; folders that
    exist keep theirs (they are the user's)."""
    missing: list[Path] = []
    current = folder
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        try:
            os.mkdir(path, mode)
        except FileExistsError:
            continue  # made by someone else meanwhile: theirs
        os.chmod(path, mode)


def create_private(path: Path, mode: int = PRIVATE_FILE) -> bool:
    """Create ``path`` empty with exactly ``mode`` (and its folders private) unless it
    exists; return whether it was created."""
    private_folders(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    return True


def write_private(path: Path, data: str | bytes, mode: int = PRIVATE_FILE) -> None:
    """Replace ``path`` with ``data`` atomically, at ``mode`` or the file's current mode
    if that is narrower; the temporary file never outlives a failure."""
    private_folders(path.parent)
    with contextlib.suppress(FileNotFoundError):
        mode &= stat.S_IMODE(path.stat().st_mode)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_private(path: Path, what: str) -> bytes:
    """Read a secret file, refusing one that group or others can read (ConfigError)."""
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                f"{what} {path} is readable by other users; restrict it with: chmod 600 {path}"
            )
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what} {path}: {exc.strerror}") from None

"""Atomic file writes shared by the renderer's writers (meshes, OpenEXR images)."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

__all__ = ["write_atomically"]


def write_atomically(path: str | os.PathLike, data: bytes, what: str = "file") -> Path:
    """Write ``data`` to a temporary file beside ``path`` (parent directories are created),
    fsync it and ``os.replace`` it over ``path``: a reader never sees a half-written file.

    The file gets ordinary permissions (``0644``, or those of the file it replaces).

    Raises:
        OSError: the directory cannot be created or written; the message names ``path`` and
            says it was a ``what``.

    Example:
        >>> import tempfile
        >>> p = write_atomically(tempfile.mkdtemp() + "/a/b.bin", b"xyz")
        >>> p.read_bytes()
        b'xyz'
    """
    path = Path(path)
    directory = path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as err:
        raise OSError(
            err.errno or errno.EACCES,
            f"cannot write {what} to {str(path)!r}: directory {str(directory)!r} cannot be "
            f"created or is not writable ({err.strerror or err})",
            str(path),
        ) from err
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp_name, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        raise
    return path

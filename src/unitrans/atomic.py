"""Atomic file writes that respect the umask, and up-front checks that an output place is writable.

Why: `tempfile.mkstemp` creates files with mode 0600 whatever the umask, and `os.replace` keeps that
mode, so a shared cache written through temp files was unreadable to the other users of a machine.
Every writer in unitrans goes through `atomic_path`: the output appears whole or not at all, with the
mode a plain `open()` would have given it. Hand-written because the standard library has no atomic
write, and the small packages that do (atomicwrites: archived) keep the 0600 mode.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from unitrans.errors import UnitransError


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it; restored at once
    os.umask(mask)
    return mask


def default_file_mode() -> int:
    """The mode `open(path, "w")` gives a new file under the current umask (0644 under 022)."""
    return 0o666 & ~_umask()


def apply_umask_modes(path: Path) -> None:
    """Give `path` (and, for a folder, everything under it) the modes `open`/`mkdir` give under the umask:
    temporary folders are 0700 and some writers (safetensors) make 0600 files, which a rename keeps."""
    mask = _umask()
    file_mode, dir_mode = 0o666 & ~mask, 0o777 & ~mask
    if path.is_dir() and not path.is_symlink():
        for root, dirs, files in os.walk(path):
            os.chmod(root, dir_mode)
            for name in files:
                os.chmod(os.path.join(root, name), file_mode)
            for name in dirs:
                os.chmod(os.path.join(root, name), dir_mode)
    elif path.is_file() and not path.is_symlink():
        os.chmod(path, file_mode)


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file `path` (created if needed) so that one process builds what
    several may ask for at once; without fcntl (non-POSIX) nothing is locked and renames stay atomic."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    with Path(path).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def atomic_path(path: str | Path, *, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed onto `path` with the umask's mode.

    The temporary file starts with a dot so that no reader mistakes it for an output; on any error it is
    removed, and `path` keeps its previous content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix or ".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | Path, text: str) -> None:
    """UTF-8, `\\n` line ends on every platform."""
    write_bytes_atomic(path, text.encode("utf-8"))


def is_temp_name(name: str) -> bool:
    """True for the names `atomic_path` gives its temporary files (`.<name>.<random><suffix>`)."""
    return name.startswith(".") and name.count(".") >= 2


def check_writable_dir(folder: str | Path, what: str = "output folder") -> Path:
    """Create `folder` if needed and prove it takes a file; raise a one-line `UnitransError` if not.

    Called before any long work, so an unwritable `--out` fails in a second, not after an hour.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UnitransError(f"{folder}: the {what} is a file, expected a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".unitrans-write-check.")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise UnitransError(f"{folder}: the {what} is not writable ({describe_os_error(err)})") from None
    return folder


def check_writable_file(path: str | Path, what: str = "output file") -> Path:
    """The parent folder of an output file takes a file and `path` is not a folder."""
    path = Path(path)
    if path.is_dir():
        raise UnitransError(f"{path}: the {what} is a folder, expected a file path")
    check_writable_dir(path.parent if str(path.parent) else Path("."), f"folder of the {what}")
    return path


_ERRNO_WORDS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENOENT: "no such file or folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "is a folder",
    errno.ELOOP: "too many levels of symbolic links (a symlink loop)",
    errno.ENAMETOOLONG: "file name too long",
    errno.EIO: "input/output error",
}


def describe_os_error(err: OSError) -> str:
    """A short human phrase for an OSError, without Python's `[Errno N]` prefix."""
    return _ERRNO_WORDS.get(err.errno or -1, err.strerror or str(err))


def os_error_line(err: OSError) -> str:
    """One line for an environment error the user must fix: the path and what went wrong."""
    where = err.filename if err.filename is not None else ""
    what = describe_os_error(err)
    return f"{where}: {what}" if where else what

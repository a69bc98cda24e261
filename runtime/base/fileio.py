"""Reading and writing files safely: one atomic writer, regular-file-only reads, content hashes.

Every file the project writes (exports, specs, engines, indexes, embeddings, reports) goes through
``atomic_write``: a temp file in the same folder, fsync, ``os.replace``, then an fsync of the
folder so the rename itself survives a power cut. The temp file is created with mode 0666 and the
kernel applies the umask, so written files get the permissions every other tool gives them (issue
17 item 11: ``mkstemp``'s 0600 broke services running as another user).

Reads go through ``open_regular``: it refuses FIFOs, devices and folders before reading, opening
with ``O_NONBLOCK`` so that a FIFO never blocks the open itself (issue 17 item 7).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "DISK_FULL_ERRNOS",
    "NotRegularFileError",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "explain_full_disk",
    "file_sha256",
    "fsync_dir",
    "live_temp",
    "open_regular",
    "pid_alive",
    "read_json",
    "remove_stale_temps",
    "temp_name",
    "temp_writer_pid",
]

_TMP_SUFFIX = ".tmp"
_TEMP_NAME = re.compile(r"^\..+\.(\d+)\.[0-9a-f]{8}\.tmp$")  # temp_name: .<name>.<pid>.<hex>.tmp


class NotRegularFileError(ValueError):
    """The path is a FIFO, a device or a folder where a regular file was expected."""


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def open_regular(path: str | os.PathLike[str], mode: str = "rb") -> IO[Any]:
    """Open ``path`` for reading only if it is a regular file (after following symlinks).

    ``O_NONBLOCK`` makes opening a FIFO return at once (POSIX) instead of waiting for a writer; the
    fstat of the opened descriptor then refuses it, so there is no window between check and use.
    Raises FileNotFoundError / PermissionError as ``open`` does, NotRegularFileError otherwise.
    """
    if mode not in ("rb", "r"):
        raise ValueError(f"open_regular reads only ('rb' or 'r'), got {mode!r}")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFileError(f"{path}: {_kind(st.st_mode)}, not a regular file; pass a file")
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)  # plain blocking reads from here on
        return os.fdopen(fd, mode, encoding="utf-8" if mode == "r" else None)
    except BaseException:
        os.close(fd)
        raise


def file_sha256(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open_regular(path) as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


#: A write that failed for want of room: a full disk, a quota, a file-size limit (RLIMIT_FSIZE).
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


@contextlib.contextmanager
def explain_full_disk(path: str | os.PathLike[str], what: str, then: str) -> Iterator[None]:
    """Re-raise a write in the block that ran out of room as one line that names ``path``, says
    ``what`` failed and why, and what to do (``then``); any other error passes unchanged."""
    try:
        yield
    except OSError as e:
        if e.errno in DISK_FULL_ERRNOS:
            raise OSError(e.errno, f"{path}: {what} ({os.strerror(e.errno)}); {then}") from None
        raise


def temp_name(path: Path) -> Path:
    """``.<name>.<pid>.<random>.tmp`` beside ``path``: hidden, and the pid says whose it is."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{_TMP_SUFFIX}")


def temp_writer_pid(name: str) -> int | None:
    """The writer's pid in a ``temp_name`` file name, or None when ``name`` is not one."""
    m = _TEMP_NAME.match(name)
    return int(m.group(1)) if m else None


def live_temp(name: str) -> bool:
    """Whether ``name`` is a ``temp_name`` file that another live process may still be writing.
    Cleaners leave those alone; this process's own temps are not being written while it cleans."""
    pid = temp_writer_pid(name)
    return pid is not None and pid != os.getpid() and pid_alive(pid)


def atomic_write(path: str | os.PathLike[str], data: bytes | memoryview | Iterable[bytes | memoryview]) -> Path:
    """Write ``data`` (bytes, or an iterable of chunks) so readers see the old file or the new one.

    On any failure (a full disk included) the temp file is removed and the previous file is
    untouched; the error is re-raised.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    chunks: Iterable[bytes | memoryview] = [data] if isinstance(data, (bytes, bytearray, memoryview)) else data
    tmp = temp_name(p)
    # 0o666 and the kernel applies the umask, as open(2) does for every other tool's files.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(p.parent)
    return p


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    atomic_write(path, data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write(path, text.encode("utf-8"))


def fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); harmless where directories cannot be opened."""
    try:
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (a temp file's writer may still be writing it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temps(path: str | os.PathLike[str]) -> list[Path]:
    """Remove the temp files ``atomic_write(path)`` left behind when its writer was killed (-9).

    Only temps whose writer pid is gone (or is this process, which is not writing while it calls
    this) are removed; call it while holding the lock that serialises the writers of ``path``.
    Returns the removed paths.
    """
    p = Path(path)
    removed: list[Path] = []
    prefix = f".{p.name}."
    try:
        names = os.listdir(p.parent)
    except OSError:
        return removed
    for name in names:
        if not (name.startswith(prefix) and name.endswith(_TMP_SUFFIX)):
            continue
        parts = name[len(prefix):-len(_TMP_SUFFIX)].split(".")
        if len(parts) == 2 and parts[0].isdigit():
            pid = int(parts[0])
            if pid != os.getpid() and pid_alive(pid):
                continue
        elif not (len(parts) == 1 and len(parts[0]) == 8):  # 8 characters: tempfile.mkstemp of older versions
            continue  # not one of ours (another file whose name shares the prefix)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p.parent / name)
            removed.append(p.parent / name)
    return removed


def read_json(path: str | os.PathLike[str], missing: str, malformed: str,
              error: type[ValueError] = ValueError, expect: type = dict) -> Any:
    """Parse a JSON file we wrote; every failure raises ``error`` in one line naming the file:
    ``"<path>: <missing>"``, ``"<path>: malformed JSON (<why>); <malformed>"``, or a top-level
    value that is not an ``expect`` (a list where an object belongs), a FIFO, a folder."""
    p = Path(path)
    try:
        with open_regular(p, "r") as f:
            value = json.loads(f.read())
    except FileNotFoundError:
        raise error(f"{p}: {missing}") from None
    except NotRegularFileError as e:
        raise error(f"{e}; {malformed}") from None
    except PermissionError:
        raise error(f"{p}: permission denied; make it readable (chmod +r)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{p}: malformed JSON ({e}); {malformed}") from None
    except OSError as e:
        raise error(f"{p}: cannot read ({os.strerror(e.errno or errno.EIO)}); {malformed}") from None
    if not isinstance(value, expect):
        raise error(f"{p}: malformed (a JSON {type(value).__name__}, expected a JSON "
                    f"{'object' if expect is dict else expect.__name__}); {malformed}")
    return value

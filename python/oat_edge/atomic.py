"""Atomic output: a reader, a crash, Ctrl-C or a full disk leaves the old file or the new one in
place, never half of one.

Files are written under a temporary name in the same directory, flushed to disk, then renamed
over the target (`os.replace` is atomic within one filesystem). Directories (bundles, result
folders) are built as a hidden sibling and swapped with the old one in a single `renameat2`
exchange where the kernel offers it, so the path always names a complete directory.

Every failure becomes an `OutputError` with one line that names the path and what to do; the
temporary name is removed first, so nothing truncated is left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
import tempfile


class OutputError(Exception):
    """An output path cannot be written (missing permission, a file in the way, disk full...)."""


def _describe(exc: OSError, path) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"no space left on device while writing {path} (nothing was written there; "
                f"the previous file, if any, is unchanged): free some space and run again")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write {path}: permission denied: choose a writable path"
    return f"cannot write {path}: {exc.strerror or exc}"


def _nearest_existing(path: str) -> str:
    p = os.path.abspath(path)
    while not os.path.lexists(p):
        p = os.path.dirname(p)
    return p


def _check_parent(path: str, flag: str) -> None:
    """The directory that will hold `path` exists or can be created, and is writable."""
    parent = os.path.dirname(os.path.abspath(path))
    anc = _nearest_existing(parent)
    if not os.path.isdir(anc):
        raise OutputError(f"{flag}: {path} cannot be created because {anc} is a file, not a "
                          f"directory: choose another path")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise OutputError(f"{flag}: cannot write under {anc}: permission denied: choose a "
                          f"writable path")


def check_output_file(path, flag: str = "output") -> str:
    """Check before a long run that `path` can later be written as a file; returns it.

    Missing parent directories are fine (they are created on write) as long as the nearest
    existing one is a writable directory."""
    path = os.fspath(path)
    if not path:
        raise OutputError(f"{flag}: expected a file path, got an empty string")
    if os.path.isdir(path):
        raise OutputError(f"{flag}: {path} is a directory, expected a file path: give a file "
                          f"name inside it")
    _check_parent(path, flag)
    if os.path.exists(path) and not os.access(path, os.W_OK):
        # os.replace would succeed in a writable directory, but a read-only file is a signal
        raise OutputError(f"{flag}: {path} is read-only: choose another path or make it writable")
    return path


def check_output_dir(path, force: bool = False, flag: str = "--out") -> str:
    """Check before a long run that `path` can become a results directory; returns it.

    An existing non-empty directory is refused unless `force`, so that a run never silently
    replaces the results of another."""
    path = os.fspath(path)
    if not path:
        raise OutputError(f"{flag}: expected a directory path, got an empty string")
    if os.path.lexists(path) and not os.path.isdir(path):
        raise OutputError(f"{flag}: {path} is a file, expected a directory: choose another path")
    _check_parent(path, flag)
    if os.path.isdir(path):
        if not os.access(path, os.W_OK | os.X_OK):
            raise OutputError(f"{flag}: cannot write in {path}: permission denied")
        if os.listdir(path) and not force:
            raise OutputError(f"{flag}: {path} already holds results; pass --force to replace "
                              f"them or choose another directory")
    return path


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the rename is still atomic
    finally:
        os.close(fd)


def _makedirs(d: str, path) -> None:
    try:
        os.makedirs(d, exist_ok=True)
    except OSError as exc:
        raise OutputError(_describe(exc, path)) from None


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; whatever the body writes there replaces `path`
    when the body returns, and is removed if it raises (for writers that want a file name:
    torch.save, savefig, np.savez, onnx.save)."""
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    _makedirs(d, path)
    base = os.path.basename(path)
    stem, ext = os.path.splitext(base)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".tmp{ext}", dir=d)
    except OSError as exc:
        raise OutputError(_describe(exc, path)) from None
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a result file is as any other
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        _remove(tmp)
        raise OutputError(_describe(exc, path)) from None
    except BaseException:
        _remove(tmp)
        raise
    _fsync_dir(d)


def _umask() -> int:
    # read once: os.umask can only be read by setting it, which races with other threads
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return _UMASK


_UMASK = None


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)


def _write_all(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def write_bytes(path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        _write_all(tmp, data)


def write_text(path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path, obj, indent: int = 2) -> None:
    write_text(path, json.dumps(obj, indent=indent) + "\n")


# ------------------------------------------------------------------------------ directories

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: str, b: str) -> bool:
    """Swap two existing paths in one step (Linux renameat2); False where unsupported."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), a)


def replace_dir(staged: str, path: str) -> None:
    """Put the complete directory `staged` at `path`, replacing what was there."""
    if not os.path.lexists(path):
        os.rename(staged, path)
    elif os.path.isdir(path) and _exchange(staged, path):
        shutil.rmtree(staged, ignore_errors=True)  # `staged` now holds the old directory
    else:
        # Fallback: two renames; between them the old directory survives under `old`.
        old = staged + ".old"
        os.rename(path, old)
        os.rename(staged, path)
        shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(os.path.dirname(os.path.abspath(path)))


@contextlib.contextmanager
def atomic_dir(path):
    """Yield an empty hidden sibling directory of `path`; when the body returns it replaces
    `path` as a whole, and if the body raises it is removed and `path` is left untouched."""
    path = os.fspath(path).rstrip("/\\") or os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    _makedirs(parent, path)
    try:
        staged = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise OutputError(_describe(exc, path)) from None
    try:
        os.chmod(staged, 0o777 & ~_umask())  # mkdtemp makes 0700
        yield staged
        replace_dir(staged, path)
    except OSError as exc:
        shutil.rmtree(staged, ignore_errors=True)
        raise OutputError(_describe(exc, path)) from None
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise

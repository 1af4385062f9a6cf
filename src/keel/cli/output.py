"""Writing a command's result to a file the user named (``-o PATH``), with clear refusals.

``-o -`` is standard output. An existing file is kept unless ``--force``; a folder, a missing
folder, a file that cannot be written or a full disk is a one-line error that names the path,
and a half-written file never stays behind: the text goes to a temporary file beside the
target, which is renamed over it only when every byte was written.
"""

from __future__ import annotations

import errno
import os
import sys

from keel.errors import OutputError, UsageError


def check_target(path: str, *, force: bool = False) -> str:
    """The folder ``path`` would be written in; a :class:`UsageError` if it cannot be (``-`` is fine)."""
    if path == "-":
        return ""
    if os.path.isdir(path):
        raise UsageError(f"-o {path}: that is a folder; give a file name, e.g. -o {os.path.join(path, 'run.json')}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"-o {path}: the folder {folder} does not exist; create it first (mkdir -p {folder})")
    if os.path.lexists(path) and not force:
        raise UsageError(f"-o {path}: the file exists; add --force to replace it, or choose another name")
    return folder


def write_text(path: str, text: str, *, force: bool = False) -> bool:
    """Write ``text`` to ``path`` (``-`` = stdout). True when it went to a file."""
    if path == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return False
    folder = check_target(path, force=force)
    special = os.path.exists(path) and not os.path.isfile(path)  # a device or a pipe: written in place
    tmp = path if special else os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            if not special:
                os.fsync(fh.fileno())
        if not special:
            os.replace(tmp, path)
    except OSError as exc:
        if special:
            tmp = ""
        try:
            if tmp:
                os.unlink(tmp)
        except OSError:
            pass
        reason = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
                  errno.EACCES: "permission denied", errno.EROFS: "the file system is read-only",
                  errno.EPERM: "permission denied"}.get(exc.errno or 0, exc.strerror or str(exc))
        raise OutputError(f"-o {path}: could not write it: {reason}; nothing was written") from None
    return True

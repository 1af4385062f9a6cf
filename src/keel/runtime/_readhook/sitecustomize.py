"""Loaded by every Python process of a cached script job (Keel puts this folder on PYTHONPATH).

Does nothing unless ``KEEL_RECORD_READS=<path>`` is set; then it notes every file the process
opens for reading (an audit hook on "open") and, at exit, appends their absolute paths to
``<path>``, one a line, in one write, so that several processes of one job can share the file.
The scheduler hashes them into the job's cache entry: a changed file makes the next run miss.
"""

import os


def _install(target: str) -> None:
    import atexit
    import sys

    seen: set[str] = set()
    skip = ("/proc/", "/sys/", "/dev/", sys.prefix + os.sep, sys.base_prefix + os.sep)

    def hook(event: str, args: tuple[object, ...]) -> None:
        if event != "open":
            return
        path, mode, flags = args[0], args[1], args[2]
        if not isinstance(path, (str, bytes)):
            return
        if mode is None:
            reading = isinstance(flags, int) and (flags & 3) == os.O_RDONLY
        else:
            reading = "r" in str(mode) and "+" not in str(mode)
        if reading:
            seen.add(os.path.abspath(os.fsdecode(path)))

    def write() -> None:
        paths = sorted(p for p in seen if not p.startswith(skip) and p != target)
        seen.clear()
        if not paths:
            return
        try:
            fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, "".join(p + "\n" for p in paths).encode("utf-8", "surrogateescape"))
            finally:
                os.close(fd)
        except OSError:
            pass

    sys.addaudithook(hook)
    atexit.register(write)


if os.environ.get("KEEL_RECORD_READS"):
    _install(os.path.abspath(os.environ["KEEL_RECORD_READS"]))

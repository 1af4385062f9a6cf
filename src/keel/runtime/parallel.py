"""``parallel_map``: a multi-core ``map`` on one machine, for use inside a step or anywhere.

    from keel import parallel_map
    sums = parallel_map(lambda off: float(m[off:off + 100].sum()), offsets)

How it works, and why:

* Workers are **forked** (``os.fork``, Linux/macOS), so ``fn`` and the items are inherited,
  never pickled: lambdas, closures over local state and unpicklable inputs all work. Only
  two small integers (a chunk's bounds) travel to a worker.
* Items are handed out in chunks, on demand, with guided sizes (a quarter of an even share
  of what is left, down to one item), so uneven items balance and cheap items do not pay
  one round trip each. Results come back through one pipe per worker, pickled with
  ``pickle`` (``cloudpickle`` when plain pickle cannot handle a result), and are put back
  in input order.
* A failing item stops the hand-out, kills the other workers and raises in the caller the
  item's own exception (same type and arguments), with a PEP 678 note that names the item
  (index and repr) and carries the worker's formatted traceback. An exception that cannot
  travel back raises :class:`ParallelMapError`; a worker that dies without reporting
  (``os._exit``, a signal, the out-of-memory killer) raises :class:`WorkerDied`, naming the
  item it was running and the exit code or signal.
* Workers never outlive the call: whatever ends it (success, an error, ``KeyboardInterrupt``)
  kills and reaps every worker still there. Workers ignore SIGINT (the caller decides) and
  are set to receive SIGKILL if the caller dies (Linux ``PR_SET_PDEATHSIG``).
* Nested use is allowed: inside a worker, ``parallel_map`` runs in that worker, one item
  after another, unless ``max_parallel`` is given explicitly (so a nested call does not
  start cpu_count² processes by default).
* ``max_parallel=1``, or a single item, runs in the calling process with the same
  exception semantics (same type, same note naming the item).
"""

from __future__ import annotations

import mmap
import os
import pickle
import selectors
import signal
import struct
import sys
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from keel.errors import ParallelMapError, WorkerDied

__all__ = ["ParallelMapError", "WorkerDied", "parallel_map"]

T = TypeVar("T")
R = TypeVar("R")

_REPR_LIMIT = 200
_FRAME = struct.Struct("!BQ")  # kind, payload length
_CHUNK = struct.Struct("!QQ")  # start, stop
_SLOT = struct.Struct("q")  # a worker's current item, in shared memory
_RESULTS, _FAILURE = 1, 2
_PIPE_SIZE = 1 << 20

_in_worker = False  # True in a worker process: nested calls default to running inline


def parallel_map(
    fn: Callable[[T], R], iterable: Iterable[T], max_parallel: int | None = None
) -> list[R]:
    """Apply ``fn`` to every item on several cores; return the results in input order.

    ``fn`` may be a lambda or a closure: workers are forked and inherit it. Results must be
    picklable (by pickle or cloudpickle). ``max_parallel`` caps the worker processes
    (default: the CPUs this process may use). A failing item raises its own exception in
    the caller, with a note naming the item and the worker's traceback::

        parallel_map(lambda x: 1 / x, [1, 0])   # ZeroDivisionError, note: item 1 (0) ...
    """
    if max_parallel is not None and (
        isinstance(max_parallel, bool) or not isinstance(max_parallel, int) or max_parallel < 1
    ):
        raise ValueError(f"parallel_map: max_parallel must be a positive integer, got {max_parallel!r}")
    items = list(iterable)
    if not items:
        return []
    if max_parallel is None:
        max_parallel = 1 if _in_worker else _usable_cpus()
    workers = min(max_parallel, len(items))
    if workers == 1 or not hasattr(os, "fork"):
        return _map_inline(fn, items)
    return _Pool(fn, items, workers).run()


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _item_repr(item: object) -> str:
    try:
        text = repr(item)
    except Exception as exc:  # a broken __repr__ must not hide the real error
        text = f"<unrepresentable {type(item).__name__}: {exc!r}>"
    return text if len(text) <= _REPR_LIMIT else text[: _REPR_LIMIT - 3] + "..."


def _map_inline(fn: Callable[[T], R], items: list[T]) -> list[R]:
    out = []
    for index, item in enumerate(items):
        try:
            out.append(fn(item))
        except BaseException as exc:
            exc.add_note(
                f"parallel_map: item {index} of {len(items)} failed: {_item_repr(item)}"
                " (run in the calling process)"
            )
            raise
    return out


# ----------------------------------------------------------------------------- the pool


@dataclass
class _Worker:
    slot: int
    pid: int
    task_fd: int  # parent writes chunk bounds
    result_fd: int  # parent reads frames
    chunk: tuple[int, int] | None = None
    reaped: bool = False
    exitcode: int | None = None


class _Pool:
    """One call's workers: fork them, hand out chunks, gather results, always reap."""

    def __init__(self, fn: Callable[[Any], Any], items: list[Any], workers: int):
        self.fn = fn
        self.items = items
        self.size = workers
        self.workers: list[_Worker] = []
        self.results: list[Any] = [None] * len(items)
        self.next_start = 0
        # Each worker writes the index of the item it is running into its slot, so a
        # worker that dies silently can be blamed on the right item without a syscall.
        self.progress = mmap.mmap(-1, _SLOT.size * workers)

    def run(self) -> list[Any]:
        ok = False
        try:
            self._start_workers()
            self._gather()
            ok = True
        finally:
            self._shutdown(graceful=ok)
        return self.results

    # -- starting

    def _start_workers(self) -> None:
        for stream in (sys.stdout, sys.stderr):  # or the children repeat buffered output
            try:
                if stream is not None:
                    stream.flush()
            except Exception:
                pass
        pdeathsig = _pdeathsig_setter()
        parent = os.getpid()
        for slot in range(self.size):
            task_r, task_w = os.pipe()
            result_r, result_w = os.pipe()
            _grow_pipe(result_w)
            try:
                pid = os.fork()
            except BaseException:
                for fd in (task_r, task_w, result_r, result_w):
                    os.close(fd)
                raise
            if pid == 0:  # the worker; never returns
                inherited = [fd for w in self.workers for fd in (w.task_fd, w.result_fd)]
                _worker_main(self, slot, task_r, result_w, task_w, result_r, inherited,
                             parent, pdeathsig)
            os.close(task_r)
            os.close(result_w)
            self.workers.append(_Worker(slot, pid, task_w, result_r))

    # -- the loop

    def _gather(self) -> None:
        selector = selectors.DefaultSelector()
        try:
            busy = 0
            for worker in self.workers:
                selector.register(worker.result_fd, selectors.EVENT_READ, worker)
                busy += self._hand_out(worker)
            while busy:
                for key, _ in selector.select():
                    worker = key.data
                    frame = _read_frame(worker.result_fd)
                    if frame is None:
                        raise self._died(worker)
                    kind, payload = frame
                    if kind == _FAILURE:
                        raise self._failure(payload)
                    start, stop = worker.chunk
                    self.results[start:stop] = pickle.loads(payload)
                    worker.chunk = None
                    busy -= 1
                    if self._hand_out(worker):
                        busy += 1
                    else:
                        selector.unregister(worker.result_fd)
        finally:
            selector.close()

    def _hand_out(self, worker: _Worker) -> bool:
        """Give ``worker`` its next chunk; True if there was one, else tell it to stop."""
        remaining = len(self.items) - self.next_start
        if remaining <= 0:
            os.close(worker.task_fd)  # EOF: the worker exits
            worker.task_fd = -1
            return False
        size = max(1, remaining // (4 * self.size))
        start = self.next_start
        self.next_start = stop = start + size
        worker.chunk = (start, stop)
        try:
            os.write(worker.task_fd, _CHUNK.pack(start, stop))
        except BrokenPipeError:
            pass  # it died; its result pipe reports EOF and _died explains
        return True

    # -- failures

    def _failure(self, payload: bytes | bytearray) -> BaseException:
        report = pickle.loads(payload)
        where = (
            f"parallel_map: item {report['index']} of {len(self.items)} failed: "
            f"{report['item_repr']}"
        )
        if report["exception"] is not None:
            try:
                exc = pickle.loads(report["exception"])
            except Exception:
                exc = None
            if isinstance(exc, BaseException):
                exc.add_note(f"{where}\nTraceback in the worker process:\n{report['traceback']}")
                return exc
        message = f"{where}\n{report['summary']}"
        if report["traceback"]:
            message += f"\nTraceback in the worker process:\n{report['traceback']}"
        return ParallelMapError(message, report["index"], report["item_repr"], report["traceback"])

    def _died(self, worker: _Worker) -> WorkerDied:
        self._reap(worker, block=True)
        index = _SLOT.unpack_from(self.progress, worker.slot * _SLOT.size)[0]
        item = _item_repr(self.items[index]) if 0 <= index < len(self.items) else "?"
        code = worker.exitcode
        if code is None:
            how = "ended without reporting a result (its exit status was collected elsewhere)"
        elif code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            how = f"was killed by {name} without reporting a result"
            if -code == signal.SIGKILL:
                how += " (the out-of-memory killer sends SIGKILL when memory runs out)"
        else:
            how = f"exited with code {code} without reporting a result (os._exit?)"
        return WorkerDied(
            f"parallel_map: item {index} of {len(self.items)} failed: {item}\n"
            f"Its worker process (pid {worker.pid}) {how}.",
            index, item, code,
        )

    # -- ending

    def _shutdown(self, graceful: bool) -> None:
        """Reap every worker. On success they are exiting; otherwise kill them first."""
        for worker in self.workers:
            if worker.task_fd >= 0:
                os.close(worker.task_fd)
                worker.task_fd = -1
            if not graceful and not worker.reaped:
                try:
                    os.kill(worker.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for worker in self.workers:
            self._reap(worker, block=True)
            os.close(worker.result_fd)
        self.progress.close()

    @staticmethod
    def _reap(worker: _Worker, block: bool) -> None:
        if worker.reaped:
            return
        while True:
            try:
                pid, status = os.waitpid(worker.pid, 0 if block else os.WNOHANG)
            except ChildProcessError:  # someone else's SIGCHLD handler reaped it
                worker.reaped = True
                return
            except InterruptedError:
                continue
            break
        if pid:
            worker.reaped = True
            worker.exitcode = os.waitstatus_to_exitcode(status)


# ----------------------------------------------------------------------------- pipes


def _grow_pipe(fd: int) -> None:
    try:
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
    except (ImportError, AttributeError, OSError):
        pass


def _read_exact(fd: int, n: int) -> bytearray | None:
    """Read exactly ``n`` bytes; None on EOF before the first byte or in the middle."""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        read = os.readv(fd, [view[got:]])
        if read == 0:
            return None
        got += read
    return buf


def _read_frame(fd: int) -> tuple[int, bytearray] | None:
    header = _read_exact(fd, _FRAME.size)
    if header is None:
        return None
    kind, length = _FRAME.unpack(header)
    payload = _read_exact(fd, length)
    return None if payload is None else (kind, payload)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _write_frame(fd: int, kind: int, payload: bytes) -> None:
    _write_all(fd, _FRAME.pack(kind, len(payload)))
    _write_all(fd, payload)


def _pdeathsig_setter() -> Callable[[], None] | None:
    """A function that asks Linux to SIGKILL the calling process when its parent dies."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (ImportError, OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG


# ----------------------------------------------------------------------------- the worker


def _worker_main(pool: _Pool, slot: int, task_fd: int, result_fd: int, task_w: int,
                 result_r: int, inherited: list[int], parent: int,
                 pdeathsig: Callable[[], None] | None) -> None:
    """Run chunks until the task pipe closes, then leave with ``os._exit`` (no atexit)."""
    code = 0
    try:
        global _in_worker
        _in_worker = True
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the caller kills us
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the task's handler
        if pdeathsig is not None:
            pdeathsig()
        if os.getppid() != parent:  # the caller died before prctl took effect
            os._exit(1)
        # Other workers' pipe ends: holding their task pipe open would keep them from
        # ever seeing EOF, so the call would never end.
        for fd in (task_w, result_r, *inherited):
            os.close(fd)
        _run_chunks(pool, slot, task_fd, result_fd)
    except BrokenPipeError:
        code = 0  # the caller stopped listening: it is ending the call
    except BaseException:
        code = 70
        try:
            traceback.print_exc()
        except BaseException:
            pass
    finally:
        _flush_std()
        os._exit(code)


def _run_chunks(pool: _Pool, slot: int, task_fd: int, result_fd: int) -> None:
    fn, items, progress = pool.fn, pool.items, pool.progress
    offset = slot * _SLOT.size
    while True:
        message = _read_exact(task_fd, _CHUNK.size)
        if message is None:
            return
        start, stop = _CHUNK.unpack(message)
        out = []
        for index in range(start, stop):
            _SLOT.pack_into(progress, offset, index)
            try:
                out.append(fn(items[index]))
            except BaseException as exc:
                _flush_std()
                _write_frame(result_fd, _FAILURE, _raised_report(index, items[index], exc))
                return
        _flush_std()
        try:
            payload = _dumps(out)
        except Exception:
            _write_frame(result_fd, _FAILURE, _unpicklable_report(items, start, out))
            return
        _write_frame(result_fd, _RESULTS, payload)


def _dumps(value: object) -> bytes:
    try:
        return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
    except Exception:
        import cloudpickle

        data: bytes = cloudpickle.dumps(value, pickle.HIGHEST_PROTOCOL)
        return data


def _exception_bytes(exc: BaseException) -> bytes | None:
    """The exception pickled, if it also unpickles (a custom ``__init__`` often does not)."""
    try:
        data = _dumps(exc)
        pickle.loads(data)
        return data
    except Exception:
        return None


def _raised_report(index: int, item: object, exc: BaseException) -> bytes:
    tb = exc.__traceback__
    if tb is not None and tb.tb_next is not None:
        tb = tb.tb_next  # start at fn, not at this module's call of it
    return pickle.dumps({
        "index": index,
        "item_repr": _item_repr(item),
        "exception": _exception_bytes(exc),
        "summary": "".join(traceback.format_exception_only(exc)).rstrip(),
        "traceback": "".join(traceback.format_exception(type(exc), exc, tb)).rstrip(),
    })


def _unpicklable_report(items: list[Any], start: int, out: list[Any]) -> bytes:
    for index, result in enumerate(out, start):
        try:
            _dumps(result)
        except Exception as exc:
            summary = "".join(traceback.format_exception_only(exc)).rstrip()
            return pickle.dumps({
                "index": index,
                "item_repr": _item_repr(items[index]),
                "exception": None,
                "summary": f"Its result ({type(result).__qualname__}) cannot be sent back to "
                           f"the caller: neither pickle nor cloudpickle can pickle it: {summary}",
                "traceback": "",
            })
    raise AssertionError("a chunk failed to pickle but none of its results does")


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass

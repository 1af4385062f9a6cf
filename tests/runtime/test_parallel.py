"""parallel_map: order, closures, results that need pickling help, failures, cleanup."""

from __future__ import annotations

import os
import pickle
import signal
import time
import traceback

import numpy as np
import psutil
import pytest

from keel.errors import ExecutionError
from keel.runtime.parallel import ParallelMapError, WorkerDied, parallel_map


@pytest.fixture(autouse=True)
def no_leftover_children():
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    yield
    after = {p.pid for p in psutil.Process().children(recursive=True)}
    assert after - before == set(), "parallel_map left worker processes behind"


def formatted(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


def test_order_is_kept_with_uneven_work():
    delays = [0.03 if i % 7 == 0 else 0.0 for i in range(60)]

    def work(i):
        time.sleep(delays[i])
        return i * i, os.getpid()

    out = parallel_map(work, range(60), max_parallel=2)
    assert [square for square, _ in out] == [i * i for i in range(60)]
    pids = {pid for _, pid in out}
    assert len(pids) == 2 and os.getpid() not in pids


def test_lambdas_and_closures_over_local_state():
    offset = 10
    table = {i: str(i) for i in range(5)}
    lock_like = object()  # unpicklable-in-spirit state is fine: nothing is pickled

    def describe(x):
        return f"{table[x]}:{x + offset}:{lock_like is not None}"

    assert parallel_map(lambda x: x + offset, [1, 2, 3]) == [11, 12, 13]
    assert parallel_map(describe, range(5), max_parallel=3) == [
        f"{i}:{i + 10}:True" for i in range(5)
    ]


def test_numpy_results():
    m = np.random.default_rng(0).random((1000, 10))
    out = parallel_map(lambda off: m[off:off + 100].sum(axis=0), range(0, 1000, 100))
    expected = [m[off:off + 100].sum(axis=0) for off in range(0, 1000, 100)]
    assert len(out) == 10
    for got, want in zip(out, expected):
        np.testing.assert_array_equal(got, want)


def test_empty_generator_and_single_item():
    assert parallel_map(lambda x: x, []) == []
    assert parallel_map(lambda x: x * 2, (i for i in range(4))) == [0, 2, 4, 6]
    assert parallel_map(lambda x: os.getpid(), [0]) == [os.getpid()]  # one item: inline


def test_results_plain_pickle_cannot_handle_come_back_through_cloudpickle():
    fns = parallel_map(lambda k: (lambda x: x * k), [2, 3], max_parallel=2)
    assert [f(10) for f in fns] == [20, 30]


def test_large_results():
    out = parallel_map(lambda i: bytes([i]) * 50_000_000, [1, 2], max_parallel=2)
    assert [len(b) for b in out] == [50_000_000, 50_000_000]
    assert out[0][-1] == 1 and out[1][12345] == 2


def test_bad_max_parallel():
    with pytest.raises(ValueError, match="max_parallel must be a positive integer, got 0"):
        parallel_map(abs, [1], max_parallel=0)


def check_item(x):
    if x == 13:
        raise KeyError(f"unlucky {x}")  # the failing line
    return x


@pytest.mark.parametrize("max_parallel", [1, 4])
def test_exception_keeps_its_type_and_names_the_item(max_parallel):
    with pytest.raises(KeyError) as info:
        parallel_map(check_item, range(40), max_parallel=max_parallel)
    assert info.value.args == ("unlucky 13",)
    text = formatted(info.value)
    assert "parallel_map: item 13 of 40 failed: 13" in text
    assert 'raise KeyError(f"unlucky {x}")  # the failing line' in text
    assert "in check_item" in text


def test_worker_traceback_starts_at_the_users_function():
    with pytest.raises(ZeroDivisionError) as info:
        parallel_map(lambda x: 1 / x, [3, 2, 1, 0], max_parallel=2)
    (note,) = info.value.__notes__
    assert note.startswith("parallel_map: item 3 of 4 failed: 0\nTraceback in the worker process:\n")
    assert "keel/runtime/parallel.py" not in note
    assert note.endswith("ZeroDivisionError: division by zero")


def test_long_item_repr_is_truncated():
    big = "x" * 10_000

    with pytest.raises(ValueError) as info:
        parallel_map(lambda s: int(s), ["1", big], max_parallel=2)
    note = info.value.__notes__[0]
    first_line = note.splitlines()[0]
    assert first_line.startswith("parallel_map: item 1 of 2 failed: 'xxx")
    assert first_line.endswith("...") and len(first_line) < 300


class NeedsTwoArgs(Exception):
    def __init__(self, a, b):  # pickles, but does not unpickle: args is (a,) after super()
        super().__init__(f"{a}-{b}")


def raise_needs_two(x):
    if x == 5:
        raise NeedsTwoArgs(x, "b")
    return x


def test_exception_that_cannot_travel_becomes_parallel_map_error():
    with pytest.raises(ParallelMapError) as info:
        parallel_map(raise_needs_two, [5, 6], max_parallel=2)
    err = info.value
    assert isinstance(err, ExecutionError)
    assert err.index == 0 and err.item_repr == "5"
    assert str(err).startswith("parallel_map: item 0 of 2 failed: 5\n")
    assert "NeedsTwoArgs: 5-b\nTraceback in the worker process:\n" in str(err)
    assert "raise NeedsTwoArgs(x, \"b\")" in err.remote_traceback
    assert pickle.loads(pickle.dumps(err)).index == 0


def test_unpicklable_result_names_the_item():
    import threading

    with pytest.raises(ParallelMapError) as info:
        parallel_map(lambda x: threading.Lock() if x == 3 else x, range(6), max_parallel=2)
    assert str(info.value).startswith(
        "parallel_map: item 3 of 6 failed: 3\nIts result (lock) cannot be sent back to the "
        "caller: neither pickle nor cloudpickle can pickle it: TypeError"
    )


def test_worker_that_exits_without_reporting():
    def work(x):
        if x == 7:
            os._exit(3)
        return x

    with pytest.raises(WorkerDied) as info:
        parallel_map(work, range(20), max_parallel=2)
    err = info.value
    assert err.exitcode == 3 and err.index == 7
    assert str(err).startswith("parallel_map: item 7 of 20 failed: 7\nIts worker process (pid ")
    assert str(err).endswith("exited with code 3 without reporting a result (os._exit?).")


def test_worker_killed_by_a_signal():
    def work(x):
        if x == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return x

    with pytest.raises(WorkerDied) as info:
        parallel_map(work, range(4), max_parallel=2)
    assert info.value.exitcode == -signal.SIGKILL
    assert "item 2 of 4 failed: 2" in str(info.value)
    assert "was killed by SIGKILL without reporting a result" in str(info.value)


def test_failure_kills_the_other_workers_promptly():
    def work(x):
        if x == 0:
            raise RuntimeError("boom")
        time.sleep(300)

    started = time.monotonic()
    with pytest.raises(RuntimeError, match="boom"):
        parallel_map(work, range(8), max_parallel=4)
    assert time.monotonic() - started < 120  # not the 300 s sleep (slack for a loaded machine)


def test_keyboard_interrupt_kills_and_reaps_workers():
    def work(x):
        if x == 0:
            os.kill(os.getppid(), signal.SIGINT)  # Ctrl-C reaches the caller
        time.sleep(300)

    before = {p.pid for p in psutil.Process().children(recursive=True)}  # e.g. a test Ray cluster
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        parallel_map(work, range(4), max_parallel=4)
    assert time.monotonic() - started < 120  # not the 300 s sleep (slack for a loaded machine)
    assert {p.pid for p in psutil.Process().children(recursive=True)} - before == set()


def test_nested_calls_run_inline_in_the_worker_unless_asked():
    def inner_default(x):
        return parallel_map(lambda y: (x * y, os.getpid()), range(3))

    out = parallel_map(lambda x: (os.getpid(), inner_default(x)), range(4), max_parallel=2)
    for x, (outer_pid, inner) in enumerate(out):
        assert [v for v, _ in inner] == [x * y for y in range(3)]
        assert {pid for _, pid in inner} == {outer_pid}

    nested = parallel_map(
        lambda x: parallel_map(lambda y: (x + y, os.getpid()), range(3), max_parallel=2),
        range(2), max_parallel=2,
    )
    assert [[v for v, _ in inner] for inner in nested] == [[0, 1, 2], [1, 2, 3]]
    assert all(len({pid for _, pid in inner}) == 2 for inner in nested)


def test_buffered_output_is_not_repeated_by_workers(capfd):
    print("before the call", end="")  # still in the caller's buffer when it forks
    # each worker writes its line in one system call, so lines from two workers never interleave
    parallel_map(lambda x: os.write(1, f"from item {x}\n".encode()), range(4), max_parallel=2)
    out = capfd.readouterr().out
    assert out.count("before the call") == 1
    assert sorted(line for line in out.replace("before the call", "").splitlines() if line) == [
        f"from item {x}" for x in range(4)
    ]


def test_works_inside_a_forked_task_process_with_its_own_sigterm_handler():
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # like a Keel task: a forked process with handlers of its own
        code = 1
        try:
            os.close(read_fd)
            signal.signal(signal.SIGTERM, lambda *_: os._exit(99))
            k = 5
            out = parallel_map(lambda x: x + k, range(10), max_parallel=2)
            os.write(write_fd, pickle.dumps(out))
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert pickle.loads(data) == list(range(5, 15))

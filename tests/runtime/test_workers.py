"""Warm workers (runtime/executors/worker.py): a worker forked by the fork server runs step tasks
one after another; each task still gets its own output, the run's environment and working
directory, fresh random generators, its own CPU time and peak memory, and a worker that a task
may have left in a bad state (failed, a thread left running, grown memory) is replaced."""

from __future__ import annotations

import pytest

from keel import Flow
from keel_testing import run_in_process, write_flow

WARM = '''
    import os, random, sys, threading, time
    from keel import FlowSpec, Parameter, current, retry, step

    SEEN = []  # module state: what the earlier tasks of this process appended


    class Warm(FlowSpec):
        n = Parameter("n", default=10)
        mode = Parameter("mode", default="")

        @step
        def start(self):
            self.items = list(range(self.n))
            self.next(self.part, foreach="items")

        @retry(times=1, minutes_between_retries=0)
        @step
        def part(self):
            i = self.input
            SEEN.append(i)
            self.pid, self.seen, self.rand = os.getpid(), len(SEEN), random.random()
            self.leak, self.cwd = os.environ.get("LEAK"), os.getcwd()
            print(f"out {i}", end="")  # no newline: still all in this task's log, and only there
            print(f"err {i}", file=sys.stderr)
            os.environ["LEAK"] = str(i)
            os.chdir("/")
            first = current.retry_count == 0
            if self.mode == "fail" and i == 3 and first:
                raise RuntimeError("split 3 fails once")
            if self.mode == "thread" and i == 3:
                threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
            if self.mode == "exit" and i == 3 and first:
                os._exit(3)
            if self.mode == "kill" and i == 3 and first:
                os.kill(os.getpid(), 9)
            if self.mode == "cpu" and i == 0:
                while time.process_time() < 0.3:
                    pass
            if self.mode == "memory" and i == 0:
                block = bytearray(200 * 2**20)
                for k in range(0, len(block), 4096):
                    block[k] = 1
                del block
            self.next(self.join)

        @step
        def join(self, inputs):
            self.next(self.end)

        @step
        def end(self):
            pass
'''


@pytest.fixture
def warm(keel_home, tmp_path, monkeypatch):
    monkeypatch.setenv("KEEL_FORK_SERVER", "1")  # every step task from the fork server's workers
    monkeypatch.chdir(tmp_path)
    path = write_flow(tmp_path, "warm", WARM)

    def run(mode: str = "", **env: str) -> list:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        result = run_in_process(path, {"mode": mode}, max_workers=1)  # one task at a time: one worker
        assert result.status == "succeeded", result
        return sorted(Flow("Warm").latest_run["part"].tasks(), key=lambda t: t.index)

    return run


def test_tasks_share_a_warm_worker_but_not_what_each_one_changed(warm, tmp_path):
    parts = warm()
    assert len({t["pid"].data for t in parts}) == 1  # one worker ran them all
    assert [t["seen"].data for t in parts] == list(range(1, 11))  # module state stays, as in a Ray worker
    assert {t["leak"].data for t in parts} == {None}  # os.environ is the run's again for every task
    assert {t["cwd"].data for t in parts} == {str(tmp_path)}  # and so is the working directory
    assert len({t["rand"].data for t in parts}) == 10
    for i, t in enumerate(parts):
        assert t.stdout == f"out {i}"
        assert t.stderr == f"err {i}\n"


def test_one_task_per_process_gives_every_task_a_fresh_one(warm):
    parts = warm(KEEL_TASKS_PER_PROCESS="1")
    assert len({t["pid"].data for t in parts}) == 10
    assert {t["seen"].data for t in parts} == {1}


@pytest.mark.parametrize("mode", ["fail", "thread"])
def test_a_worker_left_in_doubt_is_replaced(warm, mode):
    parts = warm(mode)
    pids = [t["pid"].data for t in parts]
    assert len(set(pids[:3])) == 1
    assert pids[0] not in pids[4:]  # after split 3 failed, or left a thread running, a fresh worker
    if mode == "thread":
        assert pids[3] == pids[0] and parts[4]["seen"].data == 1


@pytest.mark.parametrize("mode, words", [("exit", "the task process exited with status 3"),
                                         ("kill", "the task process was killed by SIGKILL")])
def test_a_worker_that_dies_ends_only_its_task(warm, mode, words):
    parts = warm(mode)
    assert words in parts[3].exception["message"]
    assert words in parts[3].stderr
    assert parts[3].retry_count == 1
    assert [t.stdout for t in parts] == [f"out {i}" for i in range(10)]


def test_cpu_time_and_peak_memory_are_each_tasks_own(warm):
    parts = warm("cpu")
    cpu = [t.metrics["sys.cpu_time_s"][0][1] for t in parts]
    assert cpu[0] >= 0.25 and max(cpu[1:]) < 0.2, cpu
    parts = warm("memory")
    peak = [t.metrics["sys.peak_rss_mb"][0][1] for t in parts]
    assert peak[0] >= 200 and max(peak[1:]) < 150, peak


def test_a_worker_knows_when_a_task_left_a_device_open(tmp_path):
    from keel.runtime.executors.worker import has_open

    device = tmp_path / "nvidia0"  # stands for /dev/nvidia0, which a CUDA library keeps open
    device.write_bytes(b"")
    assert not has_open(str(tmp_path / "nvidia"))
    with open(device, "rb"):
        assert has_open(str(tmp_path / "nvidia"))
    assert not has_open(str(tmp_path / "nvidia"))


def test_a_worker_keeps_a_foreach_list_of_plain_values_and_only_those(tmp_path):
    from keel.runtime import task
    from keel.store.artifacts import ArtifactStore

    store = ArtifactStore.from_url(str(tmp_path / "artifacts"))
    plain, objects = store.put(list(range(50))), store.put([{"a": 1}, {"a": 2}])
    task._FOREACH_LISTS.clear()
    task._keep_foreach_list(plain, store.get(plain))
    task._keep_foreach_list(objects, store.get(objects))  # a step may change a dict in place: never kept
    assert list(task._FOREACH_LISTS) == [plain.key]
    for n in range(10):  # at most a few lists: the oldest goes
        ref = store.put([n, str(n)])
        task._keep_foreach_list(ref, store.get(ref))
    assert len(task._FOREACH_LISTS) == task._KEEP_LISTS and plain.key not in task._FOREACH_LISTS
    task._FOREACH_LISTS.clear()

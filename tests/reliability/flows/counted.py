"""A flow that keeps count of every execution of its tasks, for crash and resume tests.

start -> work (foreach over range(n)) -> join -> (left, right) -> meet -> end

Each task appends "STEP INDEX PID" to the file named by KEEL_TEST_MARKS when it starts, so
a test can prove which tasks ran again. BUG (edited in copies of this file by the tests)
makes one task fail: "work:3", "join", "left".
"""

import os
import subprocess
import time

from keel import FlowSpec, Parameter, current, step

BUG = ""


def mark(step, index="-", extra=""):
    path = os.environ.get("KEEL_TEST_MARKS")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, f"{step} {index} {os.getpid()} {extra}\n".encode())
        os.close(fd)


class Counted(FlowSpec):
    n = Parameter("n", default=6, help="foreach width")
    pause = Parameter("pause", default=0.0, help="seconds each work task sleeps")
    spawn = Parameter("spawn", default=False, help="work tasks start a `sleep` child")

    @step
    def start(self):
        mark("start")
        self.items = list(range(self.n))
        self.next(self.work, foreach="items")

    @step
    def work(self):
        extra = ""
        if self.spawn:
            extra = str(subprocess.Popen(["sleep", "300"]).pid)
        mark("work", self.input, extra)
        if BUG == f"work:{self.input}":
            raise ValueError(f"bug in item {self.input}")
        time.sleep(self.pause)
        import numpy as np

        self.arr = np.arange(1000, dtype="float64") * self.input
        current.log_metric("item", self.input)
        print(f"item {self.input}")
        self.next(self.join)

    @step
    def join(self, inputs):
        mark("join")
        if BUG == "join":
            raise ValueError("bug in join")
        self.total = float(sum(i.arr.sum() for i in inputs))
        self.next(self.left, self.right)

    @step
    def left(self):
        mark("left")
        if BUG == "left":
            raise ValueError("bug in left")
        self.l_value = self.total * 2
        self.next(self.meet)

    @step
    def right(self):
        mark("right")
        time.sleep(self.pause)
        self.r_value = self.total + 1
        self.next(self.meet)

    @step
    def meet(self, inputs):
        mark("meet")
        self.result = inputs.left.l_value + inputs.right.r_value
        self.next(self.end)

    @step
    def end(self):
        mark("end")


def expected(n: int = 6) -> float:
    total = 499500.0 * sum(range(n))
    return total * 2 + total + 1


if __name__ == "__main__":
    Counted()

"""Many metric points and log lines from a few tasks, for the concurrency test. At import it
waits for the file KEEL_TEST_GO (if set) so that many processes start their runs together."""

import os
import time

from keel import FlowSpec, Parameter, current, step

_go = os.environ.get("KEEL_TEST_GO")
if _go and __name__ == "__main__":
    while not os.path.exists(_go):
        time.sleep(0.005)


class Chatty(FlowSpec):
    points = Parameter("points", default=500, help="metric points per task")
    lines = Parameter("lines", default=50, help="log lines per task")

    @step
    def start(self):
        self.parts = [0, 1, 2, 3]
        self.next(self.talk, foreach="parts")

    @step
    def talk(self):
        for i in range(self.points):
            current.log_metric("m", float(i), step=i)
        for i in range(self.lines):
            print(f"line {self.input} {i}")
        self.part = self.input
        self.next(self.join)

    @step
    def join(self, inputs):
        self.parts_seen = sorted(i.part for i in inputs)
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    Chatty()

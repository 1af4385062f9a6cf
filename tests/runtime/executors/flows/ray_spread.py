"""A foreach whose first two tasks wait for each other: with one core per node, they can only
be running at the same time on two different nodes. A step is pinned to the worker node by a
custom Ray resource.

--folder: a folder the tasks share (this machine's disk) to meet in."""

import os
import time

from keel import FlowSpec, Parameter, current, ray, step


class SpreadFlow(FlowSpec):
    folder = Parameter("folder", default="")

    @step
    def start(self):
        self.items = list(range(4))
        self.next(self.part, foreach="items")

    @step
    def part(self):
        open(os.path.join(self.folder, f"arrived-{self.input}"), "w").close()
        deadline = time.time() + 180  # the other node's worker starts late on a loaded machine
        while len(os.listdir(self.folder)) < 2 and time.time() < deadline:
            time.sleep(0.02)
        self.square = self.input * self.input
        print("part", self.input)
        current.log_metric("square", self.square, step=self.input)
        self.next(self.join)

    @step
    def join(self, inputs):
        self.total = sum(i.square for i in inputs)
        self.next(self.pinned)

    @ray(resources={"keel_test_worker": 1})
    @step
    def pinned(self):
        self.where = "worker"
        self.next(self.end)

    @step
    def end(self):
        print("total", self.total)


if __name__ == "__main__":
    SpreadFlow()

"""Two foreach tasks that hold their node until released (the test kills one node meanwhile).

--folder: where each first attempt writes a marker, and where the test puts 'release'."""

import os
import time

from keel import FlowSpec, Parameter, current, retry, step


class HoldFlow(FlowSpec):
    folder = Parameter("folder", default="")

    @step
    def start(self):
        self.items = [0, 1]
        self.next(self.hold, foreach="items")

    @retry(times=1, minutes_between_retries=0)
    @step
    def hold(self):
        folder = self.folder
        if current.retry_count == 0:
            with open(os.path.join(folder, f"running-{self.input}"), "w") as fh:
                fh.write(str(os.getpid()))
            deadline = time.time() + 120
            while not os.path.exists(os.path.join(folder, "release")) and time.time() < deadline:
                time.sleep(0.05)
        self.value = self.input + 1
        self.next(self.join)

    @step
    def join(self, inputs):
        self.total = sum(i.value for i in inputs)
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    HoldFlow()

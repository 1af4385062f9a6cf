"""@ray on one step: that step's tasks go to Ray, the others run here."""

import os
import sys

from keel import FlowSpec, current, ray, resources, step


class MixedFlow(FlowSpec):
    @step
    def start(self):
        self.items = [1, 2, 3]
        self.next(self.heavy, foreach="items")

    @resources(cpu=64, memory=10_000_000)   # more than this machine has: fine, it runs on Ray,
    @ray(cpu=0.5, memory=100)                # where @ray's own values win
    @step
    def heavy(self):
        print(f"heavy {self.input} out")
        print(f"heavy {self.input} err", file=sys.stderr)
        os.system(f"echo heavy {self.input} from a subprocess")
        current.log_metric("loss", 1.0 / self.input, step=self.input)
        self.value = self.input * 100
        self.next(self.join)

    @step
    def join(self, inputs):
        self.total = sum(i.value for i in inputs)
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    MixedFlow()

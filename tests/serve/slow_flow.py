"""A model that takes as long as its first input says, and raises on a negative one."""

import time

from keel import FlowSpec, step


class SlowModel:
    n_features_in_ = 1

    def predict(self, x):
        wait = float(x[0][0])
        if wait < 0:
            raise ValueError("negative wait: this model raises on purpose")
        time.sleep(wait)
        return [wait for _ in x]


class Slow(FlowSpec):
    @step
    def start(self):
        self.model = SlowModel()
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    Slow()

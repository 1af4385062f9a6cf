"""numpy1g: a 1 GiB float64 array stored by one step and loaded by the next."""
from keel import FlowSpec, step


class Numpy1G(FlowSpec):
    @step
    def start(self):
        import numpy as np

        self.a = np.ones(1024**3 // 8)  # 1 GiB of float64
        self.next(self.total)

    @step
    def total(self):
        self.s = float(self.a.sum())
        self.next(self.end)

    @step
    def end(self):
        assert self.s == 1024**3 // 8, self.s
        print("sum", self.s)


if __name__ == "__main__":
    Numpy1G()

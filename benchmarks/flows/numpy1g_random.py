"""numpy1g_random: numpy1g with incompressible data (uniform random floats, like real weights).

np.ones compresses to almost nothing, which flatters a store that gzips its artifacts
(Metaflow does); random floats do not compress, so this variant shows the cost of real data.
"""
from keel import FlowSpec, step


class Numpy1GRandom(FlowSpec):
    @step
    def start(self):
        import numpy as np

        self.a = np.random.default_rng(0).random(1024**3 // 8)  # 1 GiB of float64
        self.next(self.total)

    @step
    def total(self):
        self.s = float(self.a.sum())
        self.next(self.end)

    @step
    def end(self):
        assert 0.49 < self.s / (1024**3 // 8) < 0.51, self.s
        print("sum", self.s)


if __name__ == "__main__":
    Numpy1GRandom()

from keel import FlowSpec, Parameter, current, step


class Train(FlowSpec):
    alpha = Parameter("alpha", default=0.5)
    optimizer = Parameter("optimizer", default="adam")
    fail = Parameter("fail", default=False)

    @step
    def start(self):
        import numpy as np
        import pandas as pd

        self.weights = np.arange(12, dtype="float64").reshape(3, 4) * self.alpha
        self.table = pd.DataFrame({"city": ["Oslo", "Lima"], "temp": [3.5, 19.0]})
        self.shards = [0, 1, 2]
        print("hello from start")
        self.next(self.part, foreach="shards")

    @step
    def part(self):
        self.s = self.input * 2
        self.next(self.join)

    @step
    def join(self, inputs):
        self.total = sum(i.s for i in inputs)
        self.next(self.end)

    @step
    def end(self):
        for i in range(2000):
            current.log_metric("loss", 1.0 / (1 + i * self.alpha), step=i)
        current.log_metric("acc", 0.5 + self.alpha / 2)
        print("<b>not bold</b>")
        if self.fail:
            raise RuntimeError("boom: asked to fail")


if __name__ == "__main__":
    Train()

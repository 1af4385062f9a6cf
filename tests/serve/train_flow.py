"""A small scikit-learn model trained on a DataFrame (so it knows its feature names)."""

from keel import FlowSpec, Parameter, step


class Train(FlowSpec):
    seed = Parameter("seed", default=0)
    fail = Parameter("fail", default=0)

    @step
    def start(self):
        import numpy as np
        import pandas as pd
        from sklearn.linear_model import LogisticRegression

        rng = np.random.default_rng(self.seed)
        x = pd.DataFrame(rng.normal(size=(300, 4)), columns=["a", "b", "c", "d"])
        y = (x.a + 0.5 * x.b - x.c + 0.1 * self.seed > 0).astype(int)
        self.model = LogisticRegression().fit(x, y)
        from sklearn.preprocessing import StandardScaler

        self.scaler = StandardScaler().fit(x * 10 + 3)           # for --preprocess: a model of scaled rows
        self.scaled_model = LogisticRegression().fit(self.scaler.transform(x * 10 + 3), y)
        self.next(self.end)

    @step
    def end(self):
        if self.fail:
            raise RuntimeError("this run fails on purpose")


if __name__ == "__main__":
    Train()

"""Fit a small linear model for several learning rates at once and keep the best one.

    python examples/train_demo.py run --rows 5000 --rates '[0.01, 0.1]'

Shows parameters, a branch (a baseline beside the sweep), a foreach (one task per learning
rate), artifacts passed between steps, and a metric logged per epoch.
"""

from keel import FlowSpec, Parameter, current, step


class TrainDemo(FlowSpec):
    rows = Parameter("rows", default=2000, help="number of synthetic rows")
    epochs = Parameter("epochs", default=60, help="gradient-descent epochs per learning rate")
    rates = Parameter("rates", default=[0.003, 0.01, 0.03, 0.1], help="learning rates to try (JSON list)")

    @step
    def start(self):
        """Make a synthetic regression problem."""
        import numpy as np

        rng = np.random.default_rng(0)
        self.X = rng.normal(size=(self.rows, 8))
        self.true_w = rng.normal(size=8)
        self.y = self.X @ self.true_w + rng.normal(scale=0.1, size=self.rows)
        print(f"made {self.rows} rows")
        self.next(self.baseline, self.sweep)

    @step
    def baseline(self):
        """Predict the mean: the score to beat."""
        self.baseline_mse = float(((self.y - self.y.mean()) ** 2).mean())
        self.next(self.join)

    @step
    def sweep(self):
        self.lrs = list(self.rates)
        self.next(self.train, foreach="lrs")

    @step
    def train(self):
        """Gradient descent with one learning rate (this task's foreach input)."""
        import numpy as np

        lr = self.input
        w = np.zeros(self.X.shape[1])
        for epoch in range(self.epochs):
            grad = 2 * self.X.T @ (self.X @ w - self.y) / len(self.y)
            w -= lr * grad
            mse = float(((self.X @ w - self.y) ** 2).mean())
            current.log_metric(f"mse@{lr}", mse, step=epoch)
        self.lr, self.w, self.mse = lr, w, mse
        print(f"lr={lr}: mse={mse:.4f}")
        self.next(self.pick)

    @step
    def pick(self, inputs):
        best = min(inputs, key=lambda task: task.mse)
        self.best_lr, self.best_mse, self.best_w = best.lr, best.mse, best.w
        self.next(self.join)

    @step
    def join(self, inputs):
        self.baseline_mse = inputs.baseline.baseline_mse
        self.merge_artifacts(inputs, include=["best_lr", "best_mse", "best_w"])
        current.log_metric("best_mse", self.best_mse)
        self.next(self.end)

    @step
    def end(self):
        print(f"best learning rate {self.best_lr}: mse {self.best_mse:.4f} "
              f"(baseline {self.baseline_mse:.4f})")


if __name__ == "__main__":
    TrainDemo()

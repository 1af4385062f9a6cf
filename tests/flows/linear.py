"""start -> middle -> end: each step reads what the one before it stored."""

from keel import FlowSpec, step

EXPECTED = {"x": 20, "y": 21, "result": 42}


class LinearFlow(FlowSpec):
    """A straight line of three steps."""

    @step
    def start(self):
        """Store a number."""
        self.x = 20
        self.next(self.middle)

    @step
    def middle(self):
        self.y = self.x + 1
        self.next(self.end)

    @step
    def end(self):
        self.result = self.y * 2


if __name__ == "__main__":
    LinearFlow()

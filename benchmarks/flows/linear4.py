"""linear4: four trivial steps in a line; measures the fixed cost of a tiny run."""
from keel import FlowSpec, step


class Linear4(FlowSpec):
    @step
    def start(self):
        self.x = 1
        self.next(self.a)

    @step
    def a(self):
        self.x += 1
        self.next(self.b)

    @step
    def b(self):
        self.x += 1
        self.next(self.end)

    @step
    def end(self):
        assert self.x == 3, self.x
        print("x", self.x)


if __name__ == "__main__":
    Linear4()

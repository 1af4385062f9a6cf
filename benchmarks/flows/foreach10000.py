"""foreach10000: a 10,000-way foreach of trivial tasks; measures the orchestrator's memory."""
from keel import FlowSpec, step


class Foreach10000(FlowSpec):
    @step
    def start(self):
        self.items = list(range(10000))
        self.next(self.part, foreach="items")

    @step
    def part(self):
        self.y = self.input * 2
        self.next(self.join)

    @step
    def join(self, inputs):
        self.total = sum(i.y for i in inputs)
        self.next(self.end)

    @step
    def end(self):
        assert self.total == 99990000, self.total
        print("total", self.total)


if __name__ == "__main__":
    Foreach10000()

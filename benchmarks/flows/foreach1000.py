"""foreach1000: a 1,000-way foreach of trivial tasks; measures per-task orchestration overhead."""
from keel import FlowSpec, step


class Foreach1000(FlowSpec):
    @step
    def start(self):
        self.items = list(range(1000))
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
        assert self.total == 999000, self.total
        print("total", self.total)


if __name__ == "__main__":
    Foreach1000()

"""foreach= gets the list itself instead of the attribute's name."""

from keel import FlowSpec, step


class ForeachNotStringFlow(FlowSpec):
    @step
    def start(self):
        self.items = [1, 2]
        self.next(self.part, foreach=self.items)

    @step
    def part(self):
        self.next(self.join)

    @step
    def join(self, inputs):
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    ForeachNotStringFlow()

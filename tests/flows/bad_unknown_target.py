"""A typo in self.next: part goes to 'joni', which is not a step."""

from keel import FlowSpec, step


class UnknownTargetFlow(FlowSpec):
    @step
    def start(self):
        self.items = [1, 2, 3]
        self.next(self.part, foreach="items")

    @step
    def part(self):
        self.value = self.input
        self.next(self.joni)

    @step
    def join(self, inputs):
        self.total = sum(i.value for i in inputs)
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    UnknownTargetFlow()

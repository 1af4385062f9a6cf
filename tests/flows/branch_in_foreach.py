"""A branch inside each foreach task: start -> body -> (double, triple) -> body_join -> join -> end."""

from keel import FlowSpec, step

EXPECTED = {"result": 50}  # (2 + 3) * (1 + 2 + 3 + 4)


class BranchInForeachFlow(FlowSpec):
    @step
    def start(self):
        self.items = [1, 2, 3, 4]
        self.next(self.body, foreach="items")

    @step
    def body(self):
        self.x = self.input
        self.next(self.double, self.triple)

    @step
    def double(self):
        self.value = self.x * 2
        self.next(self.body_join)

    @step
    def triple(self):
        self.value = self.x * 3
        self.next(self.body_join)

    @step
    def body_join(self, inputs):
        self.value = inputs.double.value + inputs.triple.value
        self.next(self.join)

    @step
    def join(self, inputs):
        self.result = sum(i.value for i in inputs)
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    BranchInForeachFlow()

"""A foreach on one side of a branch: start -> (fan -> work -> fan_join, single) -> join -> end."""

from keel import FlowSpec, step

EXPECTED = {"result": 1060}  # (1 + 2 + 3) * 10 + 1000


class ForeachInBranchFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.fan, self.single)

    @step
    def fan(self):
        self.items = [1, 2, 3]
        self.next(self.work, foreach="items")

    @step
    def work(self):
        self.value = self.input * 10
        self.next(self.fan_join)

    @step
    def fan_join(self, inputs):
        self.value = sum(i.value for i in inputs)
        self.next(self.join)

    @step
    def single(self):
        self.value = 1000
        self.next(self.join)

    @step
    def join(self, inputs):
        self.result = inputs.fan_join.value + inputs.single.value
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    ForeachInBranchFlow()

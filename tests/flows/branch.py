"""A static branch: start -> (add, multiply) -> join -> end."""

from keel import FlowSpec, step

EXPECTED = {"result": 22}


class BranchFlow(FlowSpec):
    @step
    def start(self):
        self.x = 5
        self.next(self.add, self.multiply)

    @step
    def add(self):
        self.value = self.x + 2
        self.next(self.join)

    @step
    def multiply(self):
        self.value = self.x * 3
        self.next(self.join)

    @step
    def join(self, inputs):
        self.result = inputs.add.value + inputs.multiply.value
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    BranchFlow()

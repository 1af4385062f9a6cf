"""A branch inside a branch: start -> (left -> (l1, l2) -> left_join, right) -> join -> end."""

from keel import FlowSpec, step

EXPECTED = {"result": 1110}


class NestedBranchFlow(FlowSpec):
    @step
    def start(self):
        self.base = 10
        self.next(self.left, self.right)

    @step
    def left(self):
        self.next(self.l1, self.l2)

    @step
    def l1(self):
        self.value = self.base
        self.next(self.left_join)

    @step
    def l2(self):
        self.value = self.base * 10
        self.next(self.left_join)

    @step
    def left_join(self, inputs):
        self.value = sum(i.value for i in inputs)
        self.next(self.join)

    @step
    def right(self):
        self.value = self.base * 100
        self.next(self.join)

    @step
    def join(self, inputs):
        self.result = inputs.left_join.value + inputs.right.value
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    NestedBranchFlow()

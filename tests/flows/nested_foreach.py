"""A foreach inside a foreach: rows x cols cells, each the product of its row and column."""

from keel import FlowSpec, step

EXPECTED = {"result": 36}  # (1 + 2) * (1 + 2 + 3) * 2


class NestedForeachFlow(FlowSpec):
    @step
    def start(self):
        self.rows = [1, 2]
        self.next(self.row, foreach="rows")

    @step
    def row(self):
        self.r = self.input
        self.cols = [1, 2, 3]
        self.next(self.cell, foreach="cols")

    @step
    def cell(self):
        self.value = self.r * self.input * 2
        self.next(self.row_join)

    @step
    def row_join(self, inputs):
        self.value = sum(i.value for i in inputs)
        self.next(self.join)

    @step
    def join(self, inputs):
        self.result = sum(i.value for i in inputs)
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    NestedForeachFlow()

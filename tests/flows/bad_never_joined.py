"""A foreach whose tasks go straight to end: nothing joins them."""

from keel import FlowSpec, step


class NeverJoinedFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.a)

    @step
    def a(self):
        self.items = [1, 2]
        self.next(self.work, foreach="items")

    @step
    def work(self):
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    NeverJoinedFlow()

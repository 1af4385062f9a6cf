"""orphan is a step that no step goes to."""

from keel import FlowSpec, step


class UnreachableFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.end)

    @step
    def orphan(self):
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    UnreachableFlow()

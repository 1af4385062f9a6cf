"""Reserved names: a step named 'index', a class attribute 'name', and self.input set by a step."""

from keel import FlowSpec, step


class ReservedFlow(FlowSpec):
    name = "my flow"

    @step
    def start(self):
        self.input = 3
        self.next(self.index)

    @step
    def index(self):
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    ReservedFlow()

"""A linear step that takes inputs as if it were a join."""

from keel import FlowSpec, step


class InputsNotJoinFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.process)

    @step
    def process(self, inputs):
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    InputsNotJoinFlow()

"""process forgets self.next, so end is never reached."""

from keel import FlowSpec, step


class MissingNextFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.process)

    @step
    def process(self):
        self.x = 1

    @step
    def end(self):
        pass


if __name__ == "__main__":
    MissingNextFlow()

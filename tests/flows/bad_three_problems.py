"""Three problems at once: an unknown target, a join without inputs, a step never reached."""

from keel import FlowSpec, step


class ThreeProblemsFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.a, self.b, self.extra)

    @step
    def a(self):
        self.next(self.join)

    @step
    def b(self):
        self.next(self.join)

    @step
    def join(self):
        self.next(self.end)

    @step
    def leftover(self):
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    ThreeProblemsFlow()

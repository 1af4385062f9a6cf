"""end goes on to another step."""

from keel import FlowSpec, step


class EndCallsNextFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.end)

    @step
    def end(self):
        self.next(self.report)

    @step
    def report(self):
        print("report")


if __name__ == "__main__":
    EndCallsNextFlow()

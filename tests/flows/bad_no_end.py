"""The last step is called 'finish' instead of 'end'."""

from keel import FlowSpec, step


class NoEndFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.finish)

    @step
    def finish(self):
        print("done")


if __name__ == "__main__":
    NoEndFlow()

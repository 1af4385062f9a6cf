"""self.next names a method that is not a step."""

from keel import FlowSpec, step


class NextToMethodFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.helper)

    def helper(self):
        return 1

    @step
    def end(self):
        pass


if __name__ == "__main__":
    NextToMethodFlow()

"""self.next is called before the step's other work, and inside an if in another step."""

from keel import FlowSpec, step


class NextNotLastFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.middle)
        print("after next")

    @step
    def middle(self):
        if True:
            self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    NextNotLastFlow()

from keel import FlowSpec, Parameter, step


class Good(FlowSpec):
    alpha = Parameter("alpha", default=0.1)

    @step
    def start(self):
        self.next(self.end)

    @step
    def end(self):
        pass

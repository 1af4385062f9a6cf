from keel import FlowSpec, cache, step


class Cached(FlowSpec):
    """Run twice: the second run takes start and every part task from the step cache."""

    @cache
    @step
    def start(self):
        self.items = list(range(12))
        self.next(self.part, foreach="items")

    @cache
    @step
    def part(self):
        self.out = self.input * 2
        self.next(self.join)

    @step
    def join(self, inputs):
        self.total = sum(i.out for i in inputs)
        self.next(self.end)

    @step
    def end(self):
        print("total", self.total)


if __name__ == "__main__":
    Cached()

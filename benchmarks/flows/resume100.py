"""resume100: a 100-way foreach where task 57 fails while RESUME100_FAIL=1; the benchmark
times `resume` of that failed run (99 finished tasks reused, one run again)."""
import os

from keel import FlowSpec, step


class Resume100(FlowSpec):
    @step
    def start(self):
        self.items = list(range(100))
        self.next(self.part, foreach="items")

    @step
    def part(self):
        if self.input == 57 and os.environ.get("RESUME100_FAIL") == "1":
            raise RuntimeError("task 57 fails on the first run")
        self.y = self.input * 2
        self.next(self.join)

    @step
    def join(self, inputs):
        self.total = sum(i.y for i in inputs)
        self.next(self.end)

    @step
    def end(self):
        assert self.total == 9900, self.total
        print("total", self.total)


if __name__ == "__main__":
    Resume100()

"""resume100: a 100-way foreach where the last split (99) fails while RESUME100_FAIL=1; the
benchmark times `resume` of that failed run (99 finished tasks reused, one run again).

The failing split is the last one launched: a failed task stops new launches, so
with an earlier one (57 until 2026-11-30) the splits not yet started (about 33 of them at
--max-workers 16) were run again by the resume too, not the one task the case is about."""
import os

from keel import FlowSpec, step


class Resume100(FlowSpec):
    @step
    def start(self):
        self.items = list(range(100))
        self.next(self.part, foreach="items")

    @step
    def part(self):
        if self.input == 99 and os.environ.get("RESUME100_FAIL") == "1":
            raise RuntimeError("task 99 fails on the first run")
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

"""start -> a -> hold -> end: 'hold' waits while the file named by --hold exists, so a test
can kill the scheduler while 'a' has just finished and 'hold' runs."""
import os
import time

from keel import FlowSpec, Parameter, step


class Held(FlowSpec):
    hold_file = Parameter("hold", default="", help="hold step waits while this file exists")

    @step
    def start(self):
        self.next(self.a)

    @step
    def a(self):
        with open(os.environ["KEEL_TEST_MARKS"], "a") as fh:
            fh.write(f"a - {os.getpid()}\n")
        self.x = 1
        self.next(self.hold)

    @step
    def hold(self):
        while self.hold_file and os.path.exists(self.hold_file):
            time.sleep(0.01)
        self.next(self.end)

    @step
    def end(self):
        assert self.x == 1


if __name__ == "__main__":
    Held()

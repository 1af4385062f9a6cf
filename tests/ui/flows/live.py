"""A run that stays alive until the test lets it go: prints, waits for files named by the test."""
import os
import time

from keel import FlowSpec, step


def _wait_for(path, seconds=120):
    deadline = time.time() + seconds
    while not os.path.exists(path) and time.time() < deadline:
        time.sleep(0.02)


class Live(FlowSpec):
    @step
    def start(self):
        print("waiting for the test", flush=True)
        _wait_for(os.environ["LIVE_GO"])
        print("LIVE-MARKER printed now")
        _wait_for(os.environ["LIVE_DONE"])
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    Live()

"""A step that stores `mb` megabytes of random bytes (they do not compress), for storage faults."""

import os

from keel import FlowSpec, Parameter, step


class Big(FlowSpec):
    mb = Parameter("mb", default=4, help="megabytes to store in step fill")

    @step
    def start(self):
        self.small = [1, 2, 3]
        self.next(self.fill)

    @step
    def fill(self):
        print("filling", flush=True)
        self.blob = os.urandom(self.mb << 20)
        self.next(self.end)

    @step
    def end(self):
        self.size = len(self.blob)


if __name__ == "__main__":
    Big()

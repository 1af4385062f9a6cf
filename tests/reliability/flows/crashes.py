"""A step that dies the way the parameter `how` says, on its first attempt only when
`once` is true (so @retry can show it is applied)."""

import os
import signal

from keel import FlowSpec, Parameter, current, retry, step


class Crashes(FlowSpec):
    how = Parameter("how", default="sigkill", help="sigkill | exit | oom")
    once = Parameter("once", default=False, help="crash on the first attempt only")

    @step
    def start(self):
        self.next(self.boom)

    @retry(times=1, minutes_between_retries=0)
    @step
    def boom(self):
        if not (self.once and current.retry_count > 0):
            if self.how == "sigkill":
                os.kill(os.getpid(), signal.SIGKILL)
            elif self.how == "exit":
                os._exit(3)
            elif self.how == "oom":
                # into the memory cgroup the test made (a 64 MB limit), then use more than that
                with open(os.path.join(os.environ["KEEL_TEST_CGROUP"], "cgroup.procs"), "w") as fh:
                    fh.write(str(os.getpid()))
                hog = [b"x" * (1 << 20) for _ in range(1024)]
                print(len(hog))
        self.survived = current.retry_count
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    Crashes()

"""A consumer process for the chaos test: drains a queue, writing each body before its ack.

    python queue_worker.py URL QUEUE OUT_FILE VISIBILITY_TIMEOUT [WORK_SECONDS]

URL is ``sqlite:///path`` or ``redis://...``. A body is written (one line, O_APPEND) before the
message is acked, so a SIGKILL between the two shows up as a duplicate, never as a loss.
"""

from __future__ import annotations

import os
import sys
import time

from keel.addons.queue import Queue, QueueSettings


def main() -> None:
    url, name, out, visibility = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    work = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0  # seconds of "work" per message
    q = Queue(name, QueueSettings(url=url, visibility_timeout=visibility, max_deliveries=100))
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    for msg in q.consume(until_closed=True):
        if work:
            time.sleep(work)
        os.write(fd, f"{msg.body}\n".encode())
        msg.ack()
    os.close(fd)


if __name__ == "__main__":
    main()

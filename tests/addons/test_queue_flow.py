"""``current.queue`` inside flow steps: a foreach of consumers records lag and depth metrics."""

from __future__ import annotations

from keel import Flow
from keel_testing import run_in_process, write_flow


def test_foreach_consumers_drain_what_the_start_step_put_and_record_lag(keel_home, tmp_path, monkeypatch):
    monkeypatch.delenv("KEEL_QUEUE_URL", raising=False)
    path = write_flow(tmp_path, "feed", '''
        from keel import FlowSpec, current, step

        class Feed(FlowSpec):
            @step
            def start(self):
                current.queue("feed").put_many(range(60))
                current.queue("feed").close()
                self.workers = [0, 1, 2]
                self.next(self.work, foreach="workers")

            @step
            def work(self):
                self.got = []
                for msg in current.queue("feed"):
                    self.got.append(msg.body)
                    msg.ack()
                self.next(self.join)

            @step
            def join(self, inputs):
                self.all = sorted(x for i in inputs for x in i.got)
                self.next(self.end)

            @step
            def end(self):
                pass
    ''')
    assert run_in_process(path).status == "succeeded"
    run = Flow("Feed").latest_run
    assert run.data.all == list(range(60))
    lags = [m for t in run["work"] for m in t.metrics.get("queue.lag_s", [])]
    assert len(lags) == 60 and all(value >= 0 for _, value, _ in lags)
    assert any("queue.depth" in t.metrics for t in run["work"])

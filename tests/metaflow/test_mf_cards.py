"""@card and current.card (issue 16, item 17): the default card, components, refresh while the
task runs, `keel card view`, and the client."""

from __future__ import annotations

import time

from keel_testing import run_cli, run_in_process, write_flow
from keel import Flow
from keel.cards import get_cards

CARDED = '''
    import os, time
    from keel import FlowSpec, step, card, current, Parameter
    from keel.cards import Markdown, Table, Image, VegaChart, ProgressBar

    PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                        "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082")

    class Carded(FlowSpec):
        alpha = Parameter("alpha", default=0.5)

        @card
        @step
        def start(self):
            self.loss = [0.9, 0.5, 0.2]
            bar = ProgressBar(max=3, label="epochs")
            current.card.append(bar)
            for epoch in range(3):
                bar.update(epoch + 1)
                current.card.refresh()
                if os.environ.get("CARD_WAIT") and epoch == 1:
                    while not os.path.exists(os.environ["CARD_WAIT"]):  # the test has read the live card
                        time.sleep(0.02)
            current.card.append(Markdown("# Training **done**"))
            current.card.append(Table([[i, v] for i, v in enumerate(self.loss)], headers=["epoch", "loss"]))
            current.card.append(Image(PNG, label="a pixel"))
            current.card.append(VegaChart({"mark": "line",
                                           "data": {"values": [{"epoch": i, "loss": v} for i, v in enumerate(self.loss)]},
                                           "encoding": {"x": {"field": "epoch"}, "y": {"field": "loss"}}}))
            self.next(self.end)

        @step
        def end(self):
            current.card.append(Markdown("ignored: end has no @card"))

    if __name__ == "__main__":
        Carded()
'''


def test_the_default_card_shows_parameters_artifacts_graph_and_components(keel_home, tmp_path):
    path = write_flow(tmp_path, "carded", CARDED)
    assert run_in_process(path).status == "succeeded"
    run = Flow("Carded").latest_run
    cards = get_cards(run["start"].task)
    assert len(cards) == 1 and cards[0].type == "default"
    page = cards[0].html
    assert "<h2>Parameters</h2>" in page and "alpha" in page and "0.5" in page
    assert "<h2>Artifacts</h2>" in page and "loss" in page
    assert "Step start" in page and "=&gt; end" in page  # the graph
    assert "<h1>Training <b>done</b></h1>" in page
    assert "<th>epoch</th><th>loss</th>" in page
    assert 'src="data:image/png;base64,' in page and "a pixel" in page
    assert "<polyline" in page  # the chart is drawn without any script from the internet
    assert '<progress value="3" max="3">' in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert run["end"].task.cards == []
    assert "_keel_cards" not in run["start"].task.artifacts


def test_refresh_shows_the_card_while_the_task_runs(keel_home, tmp_path):
    import subprocess
    import sys

    path = write_flow(tmp_path, "carded", CARDED)
    flag = tmp_path / "seen"
    proc = subprocess.Popen([sys.executable, str(path), "run"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**__import__("os").environ, "CARD_WAIT": str(flag)})
    try:
        deadline = time.monotonic() + 60
        page = ""
        while '<progress value="2"' not in page:
            assert time.monotonic() < deadline, "the refreshed card never appeared"
            run = Flow("Carded").latest_run
            if run is not None:
                tasks = list(run["start"])
                page = tasks[0].cards[0].html if tasks and tasks[0].cards else ""
            time.sleep(0.05)
        assert tasks[0].status == "running"
        flag.write_text("ok")
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert '<progress value="3"' in Flow("Carded").latest_run["start"].task.cards[0].html


def test_keel_card_view_writes_the_html(keel_home, tmp_path):
    path = write_flow(tmp_path, "carded", CARDED)
    assert run_in_process(path).status == "succeeded"
    proc = run_cli("card", "view", "Carded/1/start", "--out", "card.html", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(tmp_path / "card.html")
    assert "<h1>Training <b>done</b></h1>" in (tmp_path / "card.html").read_text()
    missing = run_cli("card", "view", "Carded/1/end", cwd=tmp_path)
    assert missing.returncode == 2
    assert "task Carded/1/end/2 has no card; add @card to its step to make one" in missing.stderr


def test_several_cards_on_a_step_are_reached_by_id(keel_home, tmp_path):
    path = write_flow(tmp_path, "twocards", '''
        from keel import FlowSpec, step, card, current
        from keel.cards import Markdown

        class TwoCards(FlowSpec):
            @card
            @card(type="blank", id="summary")
            @step
            def start(self):
                current.card.append(Markdown("to the default card"))
                current.card["summary"].append(Markdown("to the summary"))
                self.next(self.end)

            @step
            def end(self):
                pass
    ''')
    assert run_in_process(path).status == "succeeded"
    task = Flow("TwoCards").latest_run["start"].task
    (summary,) = get_cards(task, "summary")
    (default,) = [c for c in task.cards if c.id is None]
    assert summary.type == "blank" and "to the summary" in summary.html and "Artifacts" not in summary.html
    assert "to the default card" in default.html and "to the summary" not in default.html


def test_two_cards_with_one_id_are_refused():
    import pytest

    from keel import card, step
    from keel.errors import DefinitionError

    with pytest.raises(DefinitionError, match="has two @card with id 'x'; give each card its own id="):
        @card(id="x")
        @card(id="x")
        @step
        def start(self):
            pass

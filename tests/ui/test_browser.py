"""The dashboard in a real browser: Debian's Chromium driven by Playwright against `keel ui`
started as a subprocess on a free loopback port, over a store made by real runs.

Every test checks that the page made no request to a non-loopback host and logged no console
error. Screenshots for the README land in docs/img/.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

pytest.importorskip("playwright")
pytest.importorskip("starlette")

CHROMIUM = "/usr/bin/chromium"
IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
FLOWS = Path(__file__).resolve().parent / "flows"

pytestmark = [pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Chromium is not installed: run scripts/ci-setup.sh"),
              pytest.mark.timeout(300)]   # a hang guard; it counts the session fixtures' runs on a loaded machine


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--headless=new", "--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture()
def page(browser):
    """A page that records console errors and refuses (and records) any non-loopback request."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)   # waits for what a page shows: long enough for a loaded machine
    errors: list[str] = []
    outside: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    def guard(route):
        host = urlparse(route.request.url).hostname
        if host in ("127.0.0.1", "localhost", "::1") or route.request.url.startswith("data:"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", guard)
    yield page
    context.close()
    assert outside == [], f"requests left the machine: {outside}"
    allowed = getattr(page, "allowed_console_errors", ())
    errors = [e for e in errors if not any(a in e for a in allowed)]
    assert errors == [], f"console errors: {errors}"


def test_the_runs_page_lists_runs_with_status_and_params(page, ui_server):
    page.goto(ui_server + "/#/runs")
    page.wait_for_selector("table.runs tr[data-run='Train/1']")
    assert page.locator("table.runs tbody tr").count() == 5
    row = page.locator("tr[data-run='Train/5']")
    assert row.locator(".status").text_content() == "failed"
    assert page.locator("th[data-col='params.alpha']").count() == 1
    assert "1–5 of 5" in page.locator(".pager").text_content()
    IMG.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMG / "runs.png"))


def test_the_filter_narrows_the_runs_and_shows_an_inline_error(page, ui_server):
    # The bad query's 400 answer is expected; Chromium logs every 4xx response as an error.
    page.allowed_console_errors = ("the server responded with a status of 400",)
    page.goto(ui_server + "/#/runs")
    page.wait_for_selector("tr[data-run='Train/1']")
    box = page.get_by_label("filter")
    box.fill("params.alpha >= 0.3 and status = 'succeeded'")
    box.press("Enter")
    page.wait_for_function("document.querySelectorAll('table.runs tbody tr').length === 2")
    assert page.locator("tr[data-run='Train/3']").count() == 1
    box.fill("params.alpha >> 1")
    box.press("Enter")
    error = page.locator(".filter .error")
    error.wait_for()
    page.wait_for_function("document.querySelector('.filter .error').textContent.includes('column 15')")
    assert "^" in error.text_content()
    box.fill("")
    box.press("Enter")
    page.wait_for_function("document.querySelectorAll('table.runs tbody tr').length === 5")


def test_sorting_by_a_metric_column_reorders_the_runs(page, ui_server):
    page.goto(ui_server + "/#/runs?sort=-metrics.acc")
    page.wait_for_selector("tr[data-run='Train/1']")
    order = page.locator("table.runs tbody tr").evaluate_all("rows => rows.map(r => r.dataset.run)")
    assert order[:4] == ["Train/5", "Train/4", "Train/3", "Train/2"]


def test_a_run_page_draws_the_graph_params_artifacts_and_charts(page, ui_server):
    page.goto(ui_server + "/#/run/Train/2")
    page.wait_for_selector("svg.dag g.node[data-step='part']")
    assert page.locator("svg.dag g.node").count() == 4
    assert "null" not in page.locator("main > div").first.text_content()
    assert page.locator("svg.dag g.node[data-step='part']").get_attribute("data-status") == "succeeded"
    assert "3/3 tasks" in page.locator("svg.dag g.node[data-step='part']").text_content()
    page.wait_for_selector(".chart[data-metric='loss'] canvas")
    # Stored text stays text: the comment's markup is shown, not interpreted.
    assert page.locator(".comment").first.text_content() == "<i>looks good</i>"
    page.locator("svg.dag g.node[data-step='start']").click()
    page.wait_for_selector(".artifact[data-artifact='weights']")
    assert "shape [3,4]" in page.locator(".artifact[data-artifact='weights']").text_content()
    assert "Oslo" in page.locator(".artifact[data-artifact='table']").text_content()
    page.wait_for_selector(".system tr[data-sys='sys.peak_rss_mb']")
    page.wait_for_function("document.querySelector('pre.log[data-log]').textContent.includes('hello from start')")
    page.screenshot(path=str(IMG / "run.png"), full_page=True)


def test_a_failed_run_shows_the_resume_command(page, ui_server):
    page.goto(ui_server + "/#/run/Train/5")
    page.wait_for_selector("h1 .status.failed")
    assert "keel resume Train/5" in page.locator("main").text_content()


def test_selected_runs_are_compared_with_a_shareable_link(page, ui_server):
    page.goto(ui_server + "/#/runs")
    page.wait_for_selector("tr[data-run='Train/1']")
    for run in ("Train/1", "Train/3", "Train/4"):
        page.locator(f"tr[data-run='{run}'] input[type=checkbox]").check()
    page.get_by_role("button", name="Compare").click()
    page.wait_for_selector("table.params tr[data-param='alpha']")
    assert "runs=Train/1,Train/3,Train/4" in page.url
    cells = page.locator("tr[data-param='alpha'] td.differs").all_text_contents()
    assert cells == ["0.1", "0.3", "0.4"]
    page.wait_for_selector(".chart[data-metric='loss'] .legend span >> nth=2")
    page.screenshot(path=str(IMG / "compare.png"), full_page=True)
    # A drag across the overlay asks again, once, for every run's series over that range.
    canvas = page.locator(".chart[data-metric='loss'] canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    y = box["y"] + box["height"] / 2
    with page.expect_response(lambda r: "/api/series" in r.url and "lo=" in r.url) as zoom:
        page.mouse.move(box["x"] + box["width"] * 0.4, y)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.6, y)
        page.mouse.up()
    lo, hi = zoom.value.json()["range"]
    assert 0 < lo < hi < 1999 and len(zoom.value.json()["series"]) == 3
    # The link alone reproduces the comparison in a fresh page.
    page.goto(ui_server + "/#/runs")
    page.goto(ui_server + "/#/compare?runs=Train/2,Train/4")
    page.wait_for_selector("table.params tr[data-param='alpha']")
    assert page.locator("tr[data-param='alpha'] td.differs").all_text_contents() == ["0.2", "0.4"]


def test_the_schedules_page_lists_the_projects_scheduled_jobs(page, ui_server):
    page.goto(ui_server + "/#/schedules")
    page.wait_for_selector("h1:has-text('Schedules of weather')")
    row = page.locator("main table tr").nth(1)
    assert row.locator("td").nth(0).text_content() == "ingest"
    assert row.locator("td").nth(1).text_content() == "0 * * * *"


@pytest.mark.serial  # a wall-time bound that is part of the behaviour: run alone
def test_a_live_runs_log_line_appears_within_a_second(page, tmp_path, start_ui):
    ui_home = tmp_path / ".keel"
    ui_home.mkdir()
    go, done = tmp_path / "go", tmp_path / "done"
    env = {**os.environ, "KEEL_HOME": str(ui_home), "LIVE_GO": str(go), "LIVE_DONE": str(done)}
    proc = subprocess.Popen([sys.executable, str(FLOWS / "live.py"), "run"], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stack = contextlib.ExitStack()
    try:
        from keel.store import Store, StoreSettings

        store = Store(StoreSettings(home=ui_home, metadata_url=f"sqlite:///{ui_home / 'metadata.db'}",
                                    artifact_url=str(ui_home / "artifacts")))
        deadline = time.monotonic() + 60
        while not (store.metadata.runs.list_runs("Live") and store.metadata.runs.list_tasks("Live", 1)):
            assert time.monotonic() < deadline, "the live run did not start"
            time.sleep(0.05)
        store.metadata.close()
        ui_server = stack.enter_context(start_ui(ui_home))
        page.goto(ui_server + "/#/run/Live/1")
        page.wait_for_function("(document.querySelector('pre.log[data-log]')||{}).textContent?.includes('waiting for the test')",
                               timeout=30_000)
        page.wait_for_selector("#live.on")
        go.touch()
        started = time.monotonic()
        page.wait_for_function("document.querySelector('pre.log[data-log]').textContent.includes('LIVE-MARKER')",
                               timeout=30_000)    # the bound is the assert below, which says the latency
        latency = time.monotonic() - started
        print(f"live log latency: {latency:.2f} s")
        assert latency < 2.0, f"the live log line took {latency:.2f} s to appear"
    finally:
        page.goto("about:blank")   # closes the live stream before its server stops
        done.touch()
        try:
            assert proc.wait(60) == 0, proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            stack.close()


def test_dragging_across_a_chart_asks_the_server_for_that_range(page, ui_server):
    page.goto(ui_server + "/#/run/Train/1")
    page.wait_for_selector(".chart[data-metric='loss'] .legend span")   # the series is drawn...
    page.wait_for_selector(".artifact")      # ...and the task panel above it has stopped growing
    canvas = page.locator(".chart[data-metric='loss'] canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    y = box["y"] + box["height"] / 2
    with page.expect_response(lambda r: "/metrics/loss" in r.url and "lo=" in r.url) as zoom:
        page.mouse.move(box["x"] + box["width"] * 0.4, y)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.6, y)
        page.mouse.up()
    series = zoom.value.json()
    lo, hi = series["range"]
    assert 0 < lo < hi < 1999
    assert all(lo <= x <= hi for x in series["x"])


def test_tags_and_comments_are_added_from_the_run_page(page, ui_server):
    page.goto(ui_server + "/#/run/Train/4")
    page.wait_for_selector("svg.dag")
    page.get_by_label("add tag").fill("promising")
    page.get_by_role("button", name="Tag", exact=True).click()
    page.wait_for_selector("main .tag:has-text('promising')")
    page.get_by_label("comment").fill("<script>not run</script>")
    page.get_by_role("button", name="Comment").click()
    page.wait_for_selector(".comment:has-text('<script>not run</script>')")


def test_the_tables_page_lists_tables_and_runs_sql(page, ui_server):
    page.allowed_console_errors = ("the server responded with a status of 400",)
    page.goto(ui_server + "/#/tables")
    page.wait_for_selector("tr[data-table='cities']")
    box = page.get_by_label("SQL")
    box.fill("SELECT city FROM cities WHERE temp > 10 ORDER BY city")
    page.get_by_role("button", name="Run").click()
    page.wait_for_selector(".sql table.data")
    assert page.locator(".sql table.data td").all_text_contents() == ["Lima", "Pune"]
    box.fill("DROP TABLE cities")
    page.get_by_role("button", name="Run").click()
    page.wait_for_selector(".sql .error")
    assert "read-only SELECT" in page.locator(".sql .error").text_content()
    page.locator("tr[data-table='cities'] a").first.click()
    page.wait_for_selector("h1:has-text('cities@2')")
    assert page.locator("table.history tr").count() == 3
    assert "Pune" in page.locator("table.data").text_content()


def test_the_queues_and_endpoints_pages(page, ui_server):
    page.goto(ui_server + "/#/queues")
    page.wait_for_selector("tr[data-queue='jobs']")
    assert page.locator("tr[data-queue='jobs'] td").nth(1).text_content() == "2"
    page.goto(ui_server + "/#/endpoints")
    page.wait_for_selector("tr[data-endpoint='scorer']")
    assert "Train/4" in page.locator("tr[data-endpoint='scorer']").text_content()


def test_a_task_panel_links_to_its_spark_ui(page, ui_server):
    page.goto(ui_server + "/#/run/Train/2")
    page.wait_for_selector("tr[data-task='1']")
    page.locator("tr[data-task='1']").click()
    page.wait_for_selector("p[data-link='spark_ui'] a")
    assert page.locator("p[data-link='spark_ui'] a").get_attribute("href") == "http://127.0.0.1:4040"


@pytest.fixture(scope="module")
def more_server(tmp_path_factory, start_ui):
    """`keel ui` over a second store: a flow run twice (the second takes start and its 12 foreach
    tasks from the step cache), a project run twice (its `cache: true` job cached the second
    time), and 120 runs of a flow "Bulk" (i = 1..120), for paging."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from keel_testing import run_cli, run_in_process

    folder = tmp_path_factory.mktemp("ui-more")
    home = folder / ".keel"
    (folder / "keel.yaml").write_text("name: nightly\njobs:\n  - name: ingest\n    entrypoint: python -c \"print(1)\"\n"
                                      "    cache: true\n  - name: report\n    entrypoint: python -c \"print(2)\"\n"
                                      "    after: [ingest]\n")
    for _ in range(2):
        done = run_cli("project", "run", cwd=folder, env={"KEEL_HOME": str(home)})
        assert done.returncode == 0, done.stdout + done.stderr
    mp = pytest.MonkeyPatch()
    mp.setenv("KEEL_HOME", str(home))
    mp.delenv("KEEL_METADATA_URL", raising=False)
    mp.delenv("KEEL_ARTIFACT_URL", raising=False)
    try:
        for _ in range(2):
            assert run_in_process(FLOWS / "cached.py").status == "succeeded"
        from keel.store import Store

        md = Store.from_env().metadata
        for i in range(1, 121):
            run_id = md.runs.new_run("Bulk", params={"i": i})
            md.runs.set_run_status("Bulk", run_id, "succeeded")
        md.close()
    finally:
        mp.undo()
    with start_ui(home) as url:
        yield url


def test_cached_tasks_are_marked_in_the_graph_and_the_timeline(page, more_server):
    page.goto(more_server + "/#/run/Cached/2")
    start = page.locator("svg.dag g.node[data-step='start']")
    start.wait_for()
    assert start.get_attribute("data-status") == "cached"
    part = page.locator("svg.dag g.node[data-step='part']")
    assert (part.get_attribute("data-status"), part.get_attribute("data-cached")) == ("cached", "12")
    assert "12/12 tasks · 12 cached" in part.text_content()
    assert page.locator("svg.dag g.node[data-step='join']").get_attribute("data-status") == "succeeded"
    assert page.locator(".timeline .row[data-mark='cached']").count() == 13
    assert page.locator(".timeline .row[data-mark='reused']").count() == 0
    assert "cached: outputs of Cached/1/start/1" in page.locator(".timeline .row[data-mark='cached'] .bar").first.get_attribute("title")
    # The first run computed everything: nothing is marked.
    page.goto(more_server + "/#/run/Cached/1")
    page.locator("svg.dag g.node[data-step='part']").wait_for()
    assert page.locator("svg.dag g.node[data-step='part']").get_attribute("data-cached") == "0"
    assert page.locator(".timeline .row[data-mark]").count() == 0


def test_a_cached_project_job_is_marked_like_a_cached_step(page, more_server):
    page.goto(more_server + "/#/run/nightly/2")
    ingest = page.locator("svg.dag g.node[data-step='ingest']")
    ingest.wait_for()
    assert ingest.get_attribute("data-status") == "cached"
    assert "cached: outputs of nightly/1/ingest/" in ingest.locator("title").first.text_content()
    assert page.locator("svg.dag g.node[data-step='report']").get_attribute("data-status") == "succeeded"
    assert page.locator(".timeline .row[data-mark='cached']").count() == 1
    assert "cached: nightly/1/ingest/" in page.locator("tr[data-task]").first.text_content()


def test_a_foreach_node_expands_into_its_tasks_and_a_task_opens_its_panel(page, more_server):
    page.goto(more_server + "/#/run/Cached/1")
    part = page.locator("svg.dag g.node[data-step='part']")
    part.wait_for()
    assert part.get_attribute("data-expanded") == "false" and part.locator("rect.task-cell").count() == 0
    part.locator("g.head").click()
    page.wait_for_selector("svg.dag g.node[data-step='part'][data-expanded='true']")
    cells = part.locator("rect.task-cell")
    assert cells.count() == 12
    assert set(cells.evaluate_all("cs => cs.map(c => c.dataset.status)")) == {"succeeded"}
    task_id = cells.nth(5).get_attribute("data-task")
    cells.nth(5).click()
    page.wait_for_selector(f"pre.log[data-log='{task_id}']")
    assert page.locator(".task h3").text_content().startswith(f"part/{task_id}")
    part.locator("g.head").click()       # a second click folds it again
    page.wait_for_selector("svg.dag g.node[data-step='part'][data-expanded='false']")
    assert part.locator("rect.task-cell").count() == 0


def test_the_runs_table_pages_through_every_run(page, more_server):
    page.goto(more_server + "/#/runs?where=params.i%20%3E%200&sort=params.i")
    page.wait_for_selector("tr[data-run='Bulk/1']")

    def shown() -> list[str]:
        return page.locator("table.runs tbody tr").evaluate_all("rows => rows.map(r => r.dataset.run)")

    assert shown() == [f"Bulk/{i}" for i in range(1, 51)]
    assert "1–50 of 120" in page.locator(".pager").text_content()
    assert page.get_by_role("button", name="‹ Prev").is_disabled()
    page.get_by_role("button", name="Next ›").click()
    page.wait_for_selector("tr[data-run='Bulk/51']")
    assert shown() == [f"Bulk/{i}" for i in range(51, 101)]
    page.get_by_role("button", name="Next ›").click()
    page.wait_for_selector("tr[data-run='Bulk/120']")
    assert shown() == [f"Bulk/{i}" for i in range(101, 121)]
    assert "101–120 of 120" in page.locator(".pager").text_content()
    assert page.get_by_role("button", name="Next ›").is_disabled()
    page.get_by_role("button", name="‹ Prev").click()
    page.wait_for_selector("tr[data-run='Bulk/51']")
    # A new filter starts again at the first page.
    box = page.get_by_label("filter")
    box.fill("params.i > 100")
    box.press("Enter")
    page.wait_for_selector("tr[data-run='Bulk/101']")
    assert shown() == [f"Bulk/{i}" for i in range(101, 121)]
    assert "1–20 of 20" in page.locator(".pager").text_content()

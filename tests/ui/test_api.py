"""The dashboard's JSON API, over a store made by real runs (httpx against the ASGI app)."""

from __future__ import annotations

import pytest

pytest.importorskip("starlette")


def test_runs_are_listed_newest_first_with_status_params_and_last_metrics(client):
    page = client.get("/api/runs").json()
    assert page["total"] == 5
    assert [r["pathspec"] for r in page["rows"]] == ["Train/5", "Train/4", "Train/3", "Train/2", "Train/1"]
    first = page["rows"][0]
    assert first["status"] == "failed"
    assert page["rows"][1]["params"]["alpha"] == 0.4
    assert page["rows"][1]["metrics"]["acc"] == pytest.approx(0.7)
    assert "loss" in page["metric_names"] and "alpha" in page["param_names"]
    assert page["rows"][3]["tags"] == ["baseline"]


def test_runs_are_filtered_and_sorted_on_the_server(client):
    page = client.get("/api/runs", params={"where": "params.alpha > 0.15 and status = 'succeeded'",
                                           "sort": "metrics.acc"}).json()
    assert [r["pathspec"] for r in page["rows"]] == ["Train/2", "Train/3", "Train/4"]
    assert page["total"] == 3


def test_runs_are_paginated_with_limit_and_offset(client):
    page = client.get("/api/runs", params={"limit": 2, "offset": 2}).json()
    assert [r["id"] for r in page["rows"]] == [3, 2]
    assert page["total"] == 5


def test_a_bad_filter_is_a_400_that_points_at_the_column(client):
    res = client.get("/api/runs", params={"where": "params.alpha >> 3"})
    assert res.status_code == 400
    body = res.json()
    assert body["column"] == 15
    assert body["error"].startswith("bad query at column 15: ")
    assert "Traceback" not in body["error"]


def test_a_run_has_steps_tasks_params_and_the_resume_command_when_it_failed(client):
    run = client.get("/api/runs/Train/5").json()
    assert run["status"] == "failed"
    assert run["next_command"] == "keel resume Train/5"
    assert [s["name"] for s in run["steps"]] == ["start", "part", "join", "end"]
    parts = [t for t in run["tasks"] if t["step"] == "part"]
    assert len(parts) == 3 and all(t["status"] == "succeeded" for t in parts)
    end = [t for t in run["tasks"] if t["step"] == "end"][0]
    assert end["status"] == "failed"
    assert "boom: asked to fail" in end["attempt_list"][-1]["traceback"]
    assert run["params"]["alpha"] == 0.9


def test_an_unknown_run_is_a_404_that_says_how_to_list_runs(client):
    res = client.get("/api/runs/Train/99")
    assert res.status_code == 404
    assert res.json()["error"] == "there is no run Train/99; `keel runs Train` lists its runs"


@pytest.mark.parametrize("path", ["/api/runs?offset=99999999999999999999999",
                                  "/api/runs/Train/1/metrics/loss?task=99999999999999999999999"])
def test_a_number_past_64_bits_is_a_400_not_a_server_error(client, path):
    res = client.get(path)
    assert res.status_code == 400, res.text
    assert "out of range" in res.json()["error"]


def test_artifacts_come_with_previews_of_arrays_and_tables(client):
    run = client.get("/api/runs/Train/1").json()
    start = [t for t in run["tasks"] if t["step"] == "start"][0]
    arts = client.get(f"/api/runs/Train/1/tasks/{start['id']}/artifacts").json()
    weights = arts["weights"]["preview"]
    assert weights["kind"] == "array" and weights["shape"] == [3, 4] and weights["dtype"] == "float64"
    assert weights["head"][1] == pytest.approx([0.4, 0.5, 0.6, 0.7])
    table = arts["table"]["preview"]
    assert table["kind"] == "table" and table["columns"] == ["city", "temp"]
    assert table["rows"] == [["Oslo", 3.5], ["Lima", 19.0]]


def test_logs_are_read_from_an_offset(client):
    run = client.get("/api/runs/Train/1").json()
    start = [t for t in run["tasks"] if t["step"] == "start"][0]
    whole = client.get(f"/api/runs/Train/1/tasks/{start['id']}/log").json()
    assert "hello from start" in whole["text"] and whole["done"]
    rest = client.get(f"/api/runs/Train/1/tasks/{start['id']}/log", params={"offset": 6}).json()
    assert rest["text"] == whole["text"][6:]
    assert rest["next"] == whole["next"]


def test_a_long_series_is_bucketed_with_min_max_last(client):
    s = client.get("/api/runs/Train/1/metrics/loss", params={"buckets": 100}).json()
    assert s["count"] == 2000
    assert len(s["x"]) == 100
    assert s["max"][0] == 1.0                      # the first bucket holds step 0, loss 1.0
    assert s["min"][0] == pytest.approx(1 / (1 + 19 * 0.1))
    assert s["last"][-1] == pytest.approx(1 / (1 + 1999 * 0.1))


def test_a_zoom_range_is_bucketed_again(client):
    s = client.get("/api/runs/Train/1/metrics/loss", params={"buckets": 50, "lo": 100, "hi": 199}).json()
    assert s["count"] == 100
    assert s["x"][0] >= 100 and s["x"][-1] <= 199
    assert len(s["x"]) == 50


def test_every_compared_runs_series_comes_in_one_request_over_one_range(client):
    s = client.get("/api/series", params={"runs": "Train/4,Train/1", "name": "loss", "buckets": 40}).json()
    assert [x["run"] for x in s["series"]] == ["Train/4", "Train/1"]
    assert s["range"] == [0.0, 1999.0] and all(x["range"] == [0.0, 1999.0] for x in s["series"])
    one = client.get("/api/runs/Train/1/metrics/loss", params={"buckets": 40}).json()
    assert {k: v for k, v in s["series"][1].items() if k != "task"} == {k: v for k, v in one.items() if k != "task"}
    zoom = client.get("/api/series", params={"runs": "Train/4,Train/1", "name": "loss", "buckets": 10,
                                             "lo": 100, "hi": 199}).json()
    assert [x["count"] for x in zoom["series"]] == [100, 100] and zoom["range"] == [100.0, 199.0]
    assert all(100 <= x <= 199 for series in zoom["series"] for x in series["x"])


def test_a_metric_logged_without_steps_is_overlaid_too(client):
    s = client.get("/api/series", params={"runs": "Train/1,Train/2", "name": "acc"}).json()
    assert [x["last"] for x in s["series"]] == [[0.55], [0.6]]


def test_series_without_a_metric_name_is_refused_with_a_message(client):
    res = client.get("/api/series", params={"runs": "Train/1"})
    assert res.status_code == 400 and "name the metric" in res.json()["error"]


def test_tags_and_comments_are_added_with_post(client):
    res = client.post("/api/runs/Train/3/tags", json={"add": ["keep", "keep"]})
    assert res.json()["tags"] == ["keep"]
    assert client.post("/api/runs/Train/3/tags", json={"remove": ["keep"]}).json()["tags"] == []
    comment = client.post("/api/runs/Train/3/comments", json={"text": "retry with a lower alpha"}).json()
    assert comment["text"] == "retry with a lower alpha"
    assert client.get("/api/runs/Train/3").json()["comments"][-1]["text"] == "retry with a lower alpha"


def test_an_empty_comment_is_refused_with_a_message(client):
    res = client.post("/api/runs/Train/3/comments", json={"text": "  "})
    assert res.status_code == 400 and res.json()["error"] == "a comment needs some text"


def test_compare_diffs_params_and_overlays_metric_series(client):
    data = client.get("/api/compare", params={"runs": "Train/1,Train/4"}).json()
    params = {p["name"]: p for p in data["params"]}
    assert params["alpha"]["values"] == [0.1, 0.4] and params["alpha"]["differs"]
    assert not params["fail"]["differs"]
    assert [s["run"] for s in data["series"]["loss"]] == ["Train/1", "Train/4"]


def test_compare_refuses_a_malformed_run_name(client):
    res = client.get("/api/compare", params={"runs": "Train"})
    assert res.status_code == 400
    assert "write FLOW/RUN_ID" in res.json()["error"]


def test_the_code_snapshot_is_served(client):
    code = client.get("/api/runs/Train/1/code").json()
    assert any("class Train(FlowSpec)" in text for text in code["files"].values())


def test_changes_since_reports_what_moved(ui_home):
    from keel.store import Store, StoreSettings
    from keel.ui.data import DashboardData

    store = Store(StoreSettings(home=ui_home, metadata_url=f"sqlite:///{ui_home / 'metadata.db'}",
                                artifact_url=str(ui_home / "artifacts")))
    data = DashboardData(store)
    first = data.changes_since(None, ("Train", 1))
    assert first.kinds == ()
    assert data.changes_since(first.cursor, ("Train", 1)).kinds == ()
    store.metadata.annotations.add_tags("Train", 1, ["moved"])
    assert set(data.changes_since(first.cursor, ("Train", 1)).kinds) == {"run", "runs"}
    store.metadata.annotations.remove_tags("Train", 1, ["moved"])
    store.metadata.close()


def test_a_token_is_required_when_one_is_set(ui_home):
    from starlette.testclient import TestClient

    from keel.store import Store, StoreSettings
    from keel.ui.app import create_app
    from keel.ui.data import DashboardData

    store = Store(StoreSettings(home=ui_home, metadata_url=f"sqlite:///{ui_home / 'metadata.db'}",
                                artifact_url=str(ui_home / "artifacts")))
    app = create_app(DashboardData(store), token="s3cret")
    with TestClient(app) as c:
        assert c.get("/api/runs").status_code == 401
        assert c.get("/api/runs", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/api/runs", headers={"Authorization": "Bearer wrong"}).status_code == 401
    store.metadata.close()


def test_keel_ui_refuses_a_public_address_without_a_token():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "keel.cli.main", "ui", "--host", "0.0.0.0"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "without a token: add --token SECRET" in out.stderr
    assert "Traceback" not in out.stderr


def test_schedules_show_the_last_and_next_fire_of_each_scheduled_job(client):
    import time

    data = client.get("/api/schedules").json()
    assert data["project"] == "weather"
    [row] = data["rows"]
    assert row["job"] == "ingest" and row["schedule"] == "0 * * * *"
    assert row["last_fire"] == 1_700_000_000.0 and row["last_status"] == "started"
    assert time.time() < row["next_fire"] <= time.time() + 3600


def test_bucketing_keeps_nan_points_as_text_and_short_series_whole():
    from keel.ui.data import bucket_series

    short = bucket_series([(0, 1.0, 0.0), (1, float("nan"), 0.0)], buckets=10)
    assert short["x"] == [0.0, 1.0] and short["last"] == [1.0, "nan"]
    flat = bucket_series([(None, float(i), 0.0) for i in range(10)], buckets=2)
    assert flat["min"] == [0.0, 5.0] and flat["max"] == [4.0, 9.0] and flat["last"] == [4.0, 9.0]


def test_system_metrics_are_read_per_task(client):
    run = client.get("/api/runs/Train/1").json()
    end = [t for t in run["tasks"] if t["step"] == "end"][0]
    whole = client.get("/api/runs/Train/1/metrics/sys.peak_rss_mb").json()
    one = client.get("/api/runs/Train/1/metrics/sys.peak_rss_mb", params={"task": end["id"]}).json()
    assert one["task"] == end["id"]
    assert one["count"] == 1 and whole["count"] == len(run["tasks"])   # one peak per task


def test_data_engine_tables_are_listed_with_their_latest_version(client):
    (row,) = [t for t in client.get("/api/tables").json()["rows"] if t["name"] == "cities"]
    assert (row["versions"], row["version"], row["rows"]) == (2, 2, 3)


def test_a_table_shows_its_history_and_first_rows(client):
    t = client.get("/api/tables/cities").json()
    assert [h["version"] for h in t["history"]] == [2, 1] and t["history"][0]["mode"] == "append"
    assert t["columns"] == ["city", "temp"] and t["rows"] == [["Oslo", 3.5], ["Lima", 19.0], ["Pune", 31.0]]
    assert client.get("/api/tables/cities", params={"version": 1}).json()["rows_total"] == 2
    res = client.get("/api/tables/nope")
    assert res.status_code == 404 and "no table 'nope'" in res.json()["error"]


def test_the_sql_box_answers_a_select_with_a_row_limit(client):
    r = client.post("/api/sql", json={"query": "SELECT city FROM cities ORDER BY temp DESC", "limit": 2}).json()
    assert r == {"columns": ["city"], "rows": [["Pune"], ["Lima"]], "truncated": True, "limit": 2}
    assert client.post("/api/sql", json={"query": "SELECT count(*) AS n FROM cities@1"}).json()["rows"] == [[2]]


@pytest.mark.parametrize("query, message", [
    ("SELECT nope FROM cities", "SQL failed: "),
    ("COPY cities TO '/tmp/x.csv'", "the SQL box runs one read-only SELECT"),
    ("SELECT 1; SELECT 2", "the SQL box runs one read-only SELECT"),
    ("", "write a query"),
])
def test_the_sql_box_refuses_writes_and_reports_errors_in_one_line(client, query, message):
    res = client.post("/api/sql", json={"query": query})
    assert res.status_code == 400
    assert res.json()["error"].startswith(message) and "Traceback" not in res.json()["error"]


def test_queues_are_listed_with_their_depth(client):
    (row,) = [q for q in client.get("/api/queues").json()["rows"] if q["name"] == "jobs"]
    assert (row["ready"], row["in_flight"], row["closed"]) == (2, 0, False)


def test_endpoints_of_the_project_name_the_run_they_serve(client):
    data = client.get("/api/endpoints").json()
    assert data["project"] == "weather"
    (e,) = data["rows"]
    assert (e["name"], e["serves"], e["port"]) == ("scorer", "Train/4", 8123)


def test_a_task_shows_the_spark_ui_address_it_recorded(client):
    (start,) = [t for t in client.get("/api/runs/Train/2").json()["tasks"] if t["id"] == 1]
    assert start["links"] == [{"name": "spark_ui", "url": "http://127.0.0.1:4040"}]

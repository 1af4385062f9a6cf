"""Data Engine tables over REST and --log-requests, through the real `keel serve` on loopback."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from serve_testing import Server

pa = pytest.importorskip("pyarrow")
pytest.importorskip("duckdb")


def engine_at(home: Path):
    from keel.data.engine import DataEngine

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KEEL_HOME", str(home))
        mp.delenv("KEEL_METADATA_URL", raising=False)
        mp.delenv("KEEL_ARTIFACT_URL", raising=False)
        return DataEngine.from_env()


@pytest.fixture(scope="module")
def tables(store) -> Path:
    """scores@1 (3 rows), scores@2 (2500 rows in row groups of 1000, with a NaN), users (string keys)."""
    engine = engine_at(store)
    engine.save("scores", pa.table({"id": [1, 2, 3], "score": [0.1, 0.2, 0.3]}))
    ids = list(range(2500))
    engine.save("scores", pa.table({"id": ids, "score": [float("nan") if i == 7 else i / 10 for i in ids]}),
                row_group_size=1000)
    engine.save("users", pa.table({"user": ["ann", "bob"], "age": [31, 42], "blob": [b"\xff\x00", b"ok"]}))
    return store


@pytest.fixture(scope="module")
def tserver(tables) -> Iterator[Server]:
    srv = Server(tables, "Train/1", "--artifact", "model")
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def get(server: Server, path: str, **params) -> httpx.Response:
    return httpx.get(server.url + path, params=params, timeout=30)


def test_a_page_has_rows_version_and_total(tserver):
    r = get(tserver, "/tables/scores", limit=3, offset=999)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["version"] == 2 and body["total"] == 2500
    assert [row["id"] for row in body["rows"]] == [999, 1000, 1001]   # across two row groups


def test_an_older_version_and_chosen_columns(tserver):
    body = get(tserver, "/tables/scores", version=1, columns="score").json()
    assert body == {"rows": [{"score": 0.1}, {"score": 0.2}, {"score": 0.3}], "version": 1, "total": 3}


def test_a_nan_is_served_as_null_and_bytes_as_base64(tserver):
    assert get(tserver, "/tables/scores", offset=7, limit=1).json()["rows"] == [{"id": 7, "score": None}]
    assert get(tserver, "/tables/users/rows/ann").json()["row"]["blob"] == "/wA="


def test_a_row_by_the_first_column_and_by_another(tserver):
    r = get(tserver, "/tables/scores/rows/2042")
    assert r.status_code == 200, r.text
    assert r.json() == {"row": {"id": 2042, "score": 204.2}, "version": 2}
    assert get(tserver, "/tables/users/rows/42", key_column="age").json()["row"]["user"] == "bob"


@pytest.mark.parametrize("path, params, field", [
    ("/tables/secret_name", {}, "name"),
    ("/tables/bad-name!", {}, "name"),
    ("/tables/scores", {"version": 99}, "version"),
    ("/tables/scores/rows/123456", {}, "key"),
    ("/tables/users/rows/zed", {}, "key"),
])
def test_unknown_things_are_404s_that_name_the_field_without_echoing(tserver, path, params, field):
    r = get(tserver, path, **params)
    assert r.status_code == 404, r.text
    assert r.json()["field"] == field
    for given in ("secret_name", "bad-name", "99", "123456", "zed"):
        assert given not in r.json()["error"]


@pytest.mark.parametrize("path, params, field", [
    ("/tables/scores", {"limit": 0}, "limit"),
    ("/tables/scores", {"offset": -1}, "offset"),
    ("/tables/scores", {"version": "x1"}, "version"),
    ("/tables/scores", {"version": 2**80}, "version"),   # past 64 bits: once a 500 from the database
    ("/tables/scores/rows/1", {"version": 2**80}, "version"),
    ("/tables/scores", {"columns": "id,nope_col"}, "columns"),
    ("/tables/scores/rows/abc", {}, "key"),
    ("/tables/scores/rows/1", {"key_column": "nope_col"}, "key_column"),
])
def test_bad_parameters_are_422s_that_name_the_field(tserver, path, params, field):
    r = get(tserver, path, **params)
    assert r.status_code == 422, r.text
    assert field in r.json()["field"]
    assert "nope_col" not in r.json()["error"] and "x1" not in r.json()["error"]


def test_the_table_routes_are_in_the_openapi_document(tserver):
    paths = get(tserver, "/openapi.json").json()["paths"]
    page = paths["/tables/{name}"]["get"]
    assert {p["name"] for p in page["parameters"]} == {"name", "version", "limit", "offset", "columns"}
    assert {"200", "404", "422"} <= set(page["responses"])
    assert "/tables/{name}/rows/{key}" in paths


def test_log_requests_appends_requests_to_a_table(tables):
    srv = Server(tables, "Train/1", "--artifact", "model", "--log-requests", "--log-table", "scored")
    try:
        srv.wait_ready()
        for i in range(5):
            r = httpx.post(srv.url + "/predict", json={"instances": [[0.1 * i, 0.2, 0.3, 0.4]]}, timeout=30)
            assert r.status_code == 200, r.text
        deadline = time.monotonic() + 120  # generous: a loaded machine is slow to start processes
        total = 0
        while time.monotonic() < deadline:     # written in batches from a background thread
            r = get(srv, "/tables/scored", limit=10)
            total = r.json().get("total", 0) if r.status_code == 200 else 0
            if total >= 5:
                break
            time.sleep(0.1)  # poll interval, not a wait for a condition
        assert total == 5, srv.log()
        rows = r.json()["rows"]
        assert {row["run"] for row in rows} == {"Train/1"}
        assert rows[0]["route"] == "/predict" and rows[0]["latency_ms"] > 0 and rows[0]["rows"] == 1
        assert rows[0]["inputs"].startswith("[[") and rows[0]["predictions"].startswith("[")
    finally:
        code = srv.stop()
    assert code == 0, srv.log()


def test_log_requests_keeps_every_request_through_a_graceful_stop(tables):
    srv = Server(tables, "Train/1", "--artifact", "model", "--log-requests")
    try:
        srv.wait_ready()
        r = httpx.post(srv.url + "/predict", json={"instances": [[0.1, 0.2, 0.3, 0.4]] * 3}, timeout=30)
        assert r.status_code == 200
    finally:
        code = srv.stop()       # SIGTERM: the last batch is written before the process ends
    assert code == 0, srv.log()
    logged = engine_at(tables).load("Train_requests")
    assert list(logged["rows"]) == [3] and list(logged["run"]) == ["Train/1"]

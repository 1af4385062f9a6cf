"""Bad requests are the client's: a 4xx naming the field, never echoing the values, never a 5xx."""

from __future__ import annotations

import json

import httpx
import pytest

SECRET = "s3cr3t-value-9931"


@pytest.mark.parametrize("body, status, field", [
    ({"instances": []}, 422, "instances"),
    ({"instances": [[1, 2, 3]]}, 422, "instances[0]"),
    ({"instances": [[1, 2, 3, SECRET]]}, 422, "instances[0].d"),
    ({"instances": [{"a": 1, "b": 2, "c": 3}]}, 422, "instances[0].d"),
    ({"instances": [{"a": 1, "b": 2, "c": 3, "d": 4, SECRET: 5}]}, 422, f"instances[0].{SECRET}"),
    ({"instances": [[1, 2, True, 4]]}, 422, "instances[0].c"),
    ({"instances": "rows"}, 422, "instances"),
    ({"rows": [[1, 2, 3, 4]]}, 422, "instances"),
    ([1, 2], 422, "body"),
], ids=["empty", "short-row", "string-value", "missing-feature", "unknown-feature", "bool", "not-list",
        "no-instances", "not-object"])
def test_a_bad_body_is_a_422_naming_the_field(server, body, status, field):
    r = httpx.post(server.url + "/predict", json=body)
    assert r.status_code == status, r.text
    assert r.json()["field"] == field
    if field.endswith(SECRET):
        return  # an unknown key is named (it is where the mistake is), its value is not
    assert SECRET not in r.text


def test_nan_is_refused_by_name(server):
    r = httpx.post(server.url + "/predict", content=b'{"instances": [[1, 2, NaN, 4]]}',
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["field"] == "instances[0].c"
    assert "finite" in r.json()["error"]


def test_a_body_that_is_not_json_is_a_400_without_echo(server):
    r = httpx.post(server.url + "/predict", content=b"{not json " + SECRET.encode(),
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json() == {"error": "the request body is not valid JSON", "field": "body"}


def test_a_body_over_max_body_is_a_413(server):
    rows = [[0.123456789] * 4] * 3000   # about 150 KB; the fixture's limit is 64 KB
    r = httpx.post(server.url + "/predict", json={"instances": rows})
    assert r.status_code == 413 and "64" not in r.json()["field"]
    assert "--max-body" in r.json()["error"]


def test_a_chunked_body_over_max_body_is_a_413(server):
    def chunks():
        yield b'{"instances": ['
        for _ in range(3000):
            yield b"[0.123456789, 0.1, 0.2, 0.3],"
        yield b"[1, 2, 3, 4]]}"

    r = httpx.post(server.url + "/predict", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413


def test_fastapis_own_validation_does_not_echo_input(server):
    r = httpx.get(server.url + "/v2/models/" + "x" * 50)
    assert r.status_code == 404


def test_unknown_route_is_a_404_json(server):
    r = httpx.get(server.url + "/nope")
    assert r.status_code == 404 and "error" in r.json()


def test_schemathesis_finds_no_server_error(server):
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    failures: list[str] = []
    calls = [0]
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(max_examples=25, deadline=None, database=None, derandomize=True,   # the same cases every run
                      suppress_health_check=list(HealthCheck))
        @given(operation.as_strategy())
        def check(case):
            response = case.call(base_url=server.url, timeout=10)
            calls[0] += 1
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.path}: {response.status_code} {response.text[:200]}")

        check()
    assert calls[0] >= 50              # it did send requests (all the operations, several examples each)
    assert failures == [], server.log()[-6000:]   # the traceback of each 500 is in the log

"""The three request shapes against a real server on a real run's model: Keel, MLflow, Open Inference V2."""

from __future__ import annotations

import httpx
import numpy as np
import pandas as pd
import pytest

ROWS = [[0.1, 0.2, 0.3, 0.4], [-1.0, 2.0, 0.5, 0.0], [1.5, -0.5, -2.0, 0.3]]
COLUMNS = ["a", "b", "c", "d"]


@pytest.fixture(scope="module")
def expected(store) -> list[int]:
    import os

    os.environ["KEEL_HOME"] = str(store)
    from keel import Run

    model = Run("Train/1").data.model
    return model.predict(pd.DataFrame(ROWS, columns=COLUMNS)).tolist()


def test_predict_takes_lists_of_numbers_and_names_the_run(server, expected):
    r = httpx.post(server.url + "/predict", json={"instances": ROWS})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["predictions"] == expected
    assert body["run"] == "Train/1" and body["step"] in ("start", "end") and body["artifact"] == "model"
    assert len(body["key"]) >= 16


def test_predict_takes_objects_with_feature_names(server, expected):
    rows = [dict(zip(COLUMNS, row)) for row in ROWS]
    r = httpx.post(server.url + "/predict", json={"instances": rows})
    assert r.status_code == 200 and r.json()["predictions"] == expected


@pytest.mark.parametrize("body", [
    {"dataframe_split": {"columns": COLUMNS, "data": ROWS}},
    {"dataframe_records": [dict(zip(COLUMNS, row)) for row in ROWS]},
    {"instances": ROWS},
    {"inputs": ROWS},
    {"inputs": {c: [row[i] for row in ROWS] for i, c in enumerate(COLUMNS)}},
], ids=["dataframe_split", "dataframe_records", "instances", "inputs", "inputs_columns"])
def test_invocations_takes_every_mlflow_json_shape(server, expected, body):
    r = httpx.post(server.url + "/invocations", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == expected


def test_invocations_takes_csv(server, expected):
    text = ",".join(COLUMNS) + "\n" + "\n".join(",".join(str(v) for v in row) for row in ROWS) + "\n"
    r = httpx.post(server.url + "/invocations", content=text, headers={"Content-Type": "text/csv"})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == expected


def test_v2_infer_with_one_tensor(server, expected):
    body = {"id": "req-1", "inputs": [{"name": "input-0", "shape": [3, 4], "datatype": "FP64",
                                       "data": [v for row in ROWS for v in row]}]}
    r = httpx.post(server.url + "/v2/models/Train/infer", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["id"] == "req-1" and out["model_name"] == "Train" and out["model_version"] == "1"
    assert out["outputs"][0]["data"] == expected and out["outputs"][0]["shape"] == [3]


def test_v2_infer_with_a_tensor_per_feature(server, expected):
    inputs = [{"name": c, "shape": [3], "datatype": "FP64", "data": [row[i] for row in ROWS]}
              for i, c in enumerate(COLUMNS)]
    r = httpx.post(server.url + "/v2/models/Train/infer", json={"inputs": inputs})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == expected


def test_v2_metadata_and_health(server):
    meta = httpx.get(server.url + "/v2/models/Train").json()
    assert meta["versions"] == ["1"] and [i["name"] for i in meta["inputs"]] == COLUMNS
    assert meta["parameters"]["run"] == "Train/1"
    assert httpx.get(server.url + "/v2/health/live").json() == {"live": True}
    assert httpx.get(server.url + "/v2/health/ready").json() == {"ready": True}
    assert httpx.get(server.url + "/ready").json()["run"] == "Train/1"


def test_unknown_model_is_a_404(server):
    r = httpx.post(server.url + "/v2/models/Nope/infer", json={"inputs": []})
    assert r.status_code == 404 and r.json()["field"] == "name"


def test_openapi_describes_the_features(server):
    doc = httpx.get(server.url + "/openapi.json").json()
    instance = doc["components"]["schemas"]["Instance"]
    as_object = instance["anyOf"][0]
    assert as_object["required"] == COLUMNS and as_object["properties"]["a"] == {"type": "number"}


def test_docs_load_every_asset_from_the_server_itself(server):
    import re

    page = httpx.get(server.url + "/docs")
    assert page.status_code == 200 and "swagger" in page.text.lower()
    urls = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""", page.text)
    assert urls and all(u.startswith("/") and not u.startswith("//") for u in urls), urls
    assert "http://" not in page.text and "https://" not in page.text
    for url in urls:
        if url.startswith("/docs/assets/"):
            asset = httpx.get(server.url + url)
            assert asset.status_code == 200 and len(asset.content) > 500, url
    assert {u for u in urls if u.endswith((".js", ".css"))} == {"/docs/assets/swagger-ui-bundle.js",
                                                               "/docs/assets/swagger-ui.css"}
    missing = httpx.get(server.url + "/docs/assets/..%2Fsecret")
    assert missing.status_code == 404


def test_metrics_count_requests_and_name_the_model(server):
    httpx.post(server.url + "/predict", json={"instances": ROWS})
    text = httpx.get(server.url + "/metrics").text
    assert 'keel_serve_requests_total{route="/predict",status="200"}' in text
    assert "keel_serve_request_seconds_bucket" in text and "keel_serve_batch_rows_count" in text
    assert 'keel_serve_model_info{flow="Train",run="Train/1",artifact="model"' in text


def test_offline_and_online_scores_match_on_10000_rows(server, store):
    from keel import Run

    rng = np.random.default_rng(7)
    x = pd.DataFrame(rng.normal(size=(10_000, 4)), columns=COLUMNS)
    model = Run("Train/1").data.model
    offline = model.predict(x)
    online: list[int] = []
    with httpx.Client(timeout=30) as client:
        for start in range(0, len(x), 250):  # 250 rows fit the fixture's 64 KB body limit
            chunk = x.iloc[start:start + 250].to_dict(orient="records")
            r = client.post(server.url + "/predict", json={"instances": chunk})
            assert r.status_code == 200, r.text
            online += r.json()["predictions"]
    assert len(online) == 10_000
    assert int((np.asarray(online) != offline).sum()) == 0

"""The request shapes an endpoint takes, turned into rows: Keel's and MLflow's JSON, CSV, Open Inference.

Pure functions of the decoded body; each raises ``BadInput`` naming the field, never the value.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from keel.serve.model import BadInput, LoadedModel

MLFLOW_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")


def json_body(body: bytes) -> Any:
    if not body:
        raise BadInput("body", "the request has no body; send a JSON object", 400)
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise BadInput("body", "the request body is not valid JSON", 400) from None


def json_object(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadInput("body", f"the request body must be a JSON object {what}")
    return body


# -- the three request shapes -> rows -----------------------------------------------------------

def mlflow_rows(body: Any) -> tuple[Any, str]:
    body = json_object(body, "with one of: " + ", ".join(MLFLOW_KEYS))
    given = [k for k in MLFLOW_KEYS if k in body]
    if len(given) != 1:
        raise BadInput("body", "the body must have exactly one of the keys " + ", ".join(MLFLOW_KEYS))
    key = given[0]
    value = body[key]
    if key == "dataframe_split":
        if not isinstance(value, dict) or not isinstance(value.get("data"), list):
            raise BadInput("dataframe_split.data", "dataframe_split must be an object with 'columns' and 'data' "
                                                   "(a list of rows)")
        columns = value.get("columns")
        if columns is None:
            return value["data"], "dataframe_split.data"
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise BadInput("dataframe_split.columns", "dataframe_split.columns must be a list of column names")
        rows = []
        for i, row in enumerate(value["data"]):
            if not isinstance(row, list) or len(row) != len(columns):
                raise BadInput(f"dataframe_split.data[{i}]", f"dataframe_split.data[{i}] must be a list of "
                                                             f"{len(columns)} values, one per column")
            rows.append(dict(zip(columns, row)))
        return rows, "dataframe_split.data"
    if key == "inputs" and isinstance(value, dict):
        columns = list(value)
        if not all(isinstance(v, list) for v in value.values()) or len({len(v) for v in value.values()}) > 1:
            raise BadInput("inputs", "inputs as an object must map each feature to a list, all of one length")
        n = len(next(iter(value.values()))) if value else 0
        return [{c: value[c][i] for c in columns} for i in range(n)], "inputs"
    return value, key


def csv_rows(body: bytes) -> tuple[Any, str]:
    try:
        text = body.decode("utf-8")
        table = list(csv.reader(io.StringIO(text)))
    except (UnicodeDecodeError, csv.Error):
        raise BadInput("body", "the CSV body is not readable UTF-8 CSV", 400) from None
    if len(table) < 2:
        raise BadInput("body", "the CSV body needs a header line and at least one row")
    header, rows = table[0], table[1:]
    out = []
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise BadInput(f"csv line {i + 2}", f"CSV line {i + 2} has {len(row)} values; the header has {len(header)}")
        out.append({h: _csv_value(v) for h, v in zip(header, row)})
    return out, "csv"


def _csv_value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def v2_rows(body: Any, model: LoadedModel) -> tuple[Any, str]:
    body = json_object(body, "with 'inputs': [{name, shape, datatype, data}]")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs or not all(isinstance(t, dict) for t in inputs):
        raise BadInput("inputs", "inputs must be a non-empty list of tensors {name, shape, datatype, data}")
    for i, tensor in enumerate(inputs):
        shape, data = tensor.get("shape"), tensor.get("data")
        if not isinstance(shape, list) or not shape or not all(isinstance(d, int) and not isinstance(d, bool)
                                                               and d >= 0 for d in shape):
            raise BadInput(f"inputs[{i}].shape", f"inputs[{i}].shape must be a list of sizes, e.g. [2, 4]")
        if not isinstance(data, list):
            raise BadInput(f"inputs[{i}].data", f"inputs[{i}].data must be a list")
    names = model.signature.names
    if len(inputs) == 1 and len(inputs[0]["shape"]) == 2:
        n, width = inputs[0]["shape"]
        data = _flat(inputs[0]["data"], "inputs[0].data")
        if len(data) != n * width:
            raise BadInput("inputs[0].data", f"inputs[0].data has {len(data)} values; its shape asks for {n * width}")
        return [data[r * width:(r + 1) * width] for r in range(n)], "inputs[0].data"
    columns: dict[str, list[Any]] = {}
    for i, tensor in enumerate(inputs):
        name = tensor.get("name")
        if not isinstance(name, str) or (names and name not in names):
            raise BadInput(f"inputs[{i}].name", f"inputs[{i}].name must be a feature name ({', '.join(names)}) "
                                                f"or send one tensor of shape [rows, features]")
        columns[name] = _flat(tensor["data"], f"inputs[{i}].data")
    if len({len(c) for c in columns.values()}) > 1:
        raise BadInput("inputs", "every input tensor must have one value per row (the same length)")
    n = len(next(iter(columns.values())))
    return [{c: columns[c][r] for c in columns} for r in range(n)], "inputs"


def _flat(data: list[Any], where: str) -> list[Any]:
    if data and isinstance(data[0], list):
        out: list[Any] = []
        for row in data:
            if not isinstance(row, list):
                raise BadInput(where, f"{where} mixes nested lists and values")
            out.extend(row)
        return out
    return data


def v2_datatype(values: list[Any]) -> str:
    if values and all(isinstance(v, bool) for v in values):
        return "BOOL"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "INT64"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return "FP64"
    return "BYTES"

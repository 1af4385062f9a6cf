"""A served model: the artifact loaded from a run, its input signature, and turning rows into inputs.

``load_model`` reads the artifact through the client (``keel.client``), as any reader does.
``Signature`` is what the model expects per row (feature names and JSON types, or only a
width); ``check_rows`` checks submitted rows against it and ``build_input`` builds what the model takes:
a DataFrame with the feature columns when names are known, else a 2-D float array.
Every check raises ``BadInput`` naming the field, never the submitted value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from keel.errors import BadInput, NotFoundError, UsageError

_JSON_TYPES = {"i": "integer", "u": "integer", "f": "number", "b": "boolean"}


@dataclass(frozen=True)
class Signature:
    """What one row is: named features with JSON types, or ``width`` unnamed numbers (0: unknown)."""

    names: tuple[str, ...] = ()
    types: tuple[str, ...] = ()          # per name: "number", "integer", "boolean" or "string"
    width: int = 0

    @property
    def known(self) -> bool:
        return bool(self.names) or self.width > 0

    def row_schema(self) -> dict[str, Any]:
        """The JSON schema of one instance (what /openapi.json shows clients)."""
        if self.names:
            props = {n: {"type": t} for n, t in zip(self.names, self.types)}
            as_object = {"type": "object", "properties": props, "required": list(self.names),
                         "additionalProperties": False}
            as_list = {"type": "array", "items": {"type": "number"}, "minItems": len(self.names),
                       "maxItems": len(self.names)}
            if all(t in ("number", "integer") for t in self.types):
                return {"anyOf": [as_object, as_list]}
            return as_object
        if self.width:
            return {"type": "array", "items": {"type": "number"}, "minItems": self.width, "maxItems": self.width}
        return {"type": "array", "items": {"type": "number"}, "minItems": 1}


@dataclass(frozen=True)
class LoadedModel:
    """One model, fully loaded, with where it came from. Swapped whole, never changed in place."""

    flow: str
    run_id: int
    step: str
    artifact: str
    key: str                              # the artifact's content hash
    model: Any
    signature: Signature
    preprocess: Any = None
    preprocess_key: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def run(self) -> str:
        return f"{self.flow}/{self.run_id}"

    def origin(self) -> dict[str, Any]:
        return {"run": self.run, "step": self.step, "artifact": self.artifact, "key": self.key}

    def predict(self, x: Any) -> list[Any]:
        """Predictions for the input ``x`` as JSON-ready values, one per row."""
        if self.preprocess is not None:
            x = self.preprocess.transform(x) if hasattr(self.preprocess, "transform") else self.preprocess(x)
        out = self.model.predict(x) if hasattr(self.model, "predict") else self.model(x)
        return to_json_list(out)


def to_json_list(out: Any) -> list[Any]:
    if hasattr(out, "tolist"):
        out = out.tolist()
    elif hasattr(out, "to_numpy"):
        out = out.to_numpy().tolist()
    return list(out)


def _find_task(run: Any, artifact: str) -> Any:
    """The task that holds ``artifact``: the end step's, else the latest step that set it."""
    end = run.end_task
    if end is not None and artifact in end.artifacts:
        return end
    for step in reversed(run.steps()):
        for task in step:
            if artifact in task.artifacts:
                return task
    raise NotFoundError(f"run {run.pathspec} has no artifact {artifact!r} in any step; "
                        f"give the artifact's name with --artifact NAME")


def load_model(flow: str, run_id: int | None, artifact: str, preprocess: str | None = None) -> LoadedModel:
    """Load ``artifact`` of ``flow``'s run ``run_id`` (None: the latest successful run).

    On a SQLite store the artifact is found by ``keel.store.lookup`` (no SQLAlchemy: an endpoint
    starts faster); anything it cannot answer goes through the client, which explains what is wrong."""
    from keel.settings import Settings
    from keel.store import Store
    from keel.store.lookup import SqliteLookup

    store = Store.from_env(Settings.from_env())
    lookup = SqliteLookup.open(store.settings.metadata_url)
    if lookup is not None:
        try:
            found = lookup.locate(flow, run_id, artifact)
            pre_found = lookup.locate(flow, found.run_id, preprocess) if found is not None and preprocess else None
        finally:
            lookup.close()
        if found is not None and (pre_found is not None or not preprocess):
            return _load_located(store, found, pre_found)
    return _load_through_client(flow, run_id, artifact, preprocess)


def _load_located(store: Any, found: Any, pre_found: Any) -> LoadedModel:
    """The model (and transformer) at locations from ``keel.store.lookup``, loaded from the artifact store."""
    from keel.store.artifacts import ArtifactRef

    def value(location: Any, name: str) -> Any:
        ref = ArtifactRef(**location.artifacts[name])
        where = f"artifact {name!r} of {location.flow}/{location.run_id}/{location.step}/{location.task_id}"
        return store.artifacts.get(ref, what=where)

    run = f"{found.flow}/{found.run_id}"
    model = value(found, found.name)
    pre = value(pre_found, pre_found.name) if pre_found is not None else None
    example = value(found, "input_example") if "input_example" in found.artifacts else None
    return _checked(found.flow, found.run_id, found.step, found.name, found.ref["key"], run, model, example,
                    pre_found.name if pre_found is not None else None, pre,
                    pre_found.ref["key"] if pre_found is not None else None)


def _load_through_client(flow: str, run_id: int | None, artifact: str, preprocess: str | None) -> LoadedModel:
    from keel.client.core import Flow, Run

    if run_id is None:
        run = Flow(flow).latest_successful_run
        if run is None:
            raise NotFoundError(f"flow {flow!r} has no successful run to serve; run it first "
                                f"(keel run FLOW_FILE.py), or check the name with: keel runs")
    else:
        run = Run(f"{flow}/{run_id}")
        if not run.successful:
            raise NotFoundError(f"run {flow}/{run_id} is {run.status}, not succeeded; serve a successful run "
                                f"(see keel runs {flow})")
    task = _find_task(run, artifact)
    info = task.artifacts[artifact]
    pre = pre_key = None
    if preprocess:
        pre_info = _find_task(run, preprocess).artifacts[preprocess]
        pre, pre_key = pre_info.data, pre_info.key
    example = task.data.input_example if "input_example" in task.artifacts else None
    return _checked(flow, run.id, task.step_name, artifact, info.key, run.pathspec, info.data, example,
                    preprocess, pre, pre_key)


def _checked(flow: str, run_id: int, step: str, artifact: str, key: str, run: str, model: Any, example: Any,
             preprocess: str | None, pre: Any, pre_key: str | None) -> LoadedModel:
    """The served model, once its artifacts are checked to be a model and a transformer."""
    if not (hasattr(model, "predict") or callable(model)):
        raise UsageError(f"artifact {artifact!r} of {run} is a {type(model).__name__}, which has no "
                         f"predict method and is not callable; serve a model artifact")
    if preprocess and not (hasattr(pre, "transform") or callable(pre)):
        raise UsageError(f"artifact {preprocess!r} of {run} has no transform method and is not "
                         f"callable; --preprocess names a fitted transformer")
    signature = infer_signature(pre if pre is not None else model, example)
    return LoadedModel(flow=flow, run_id=run_id, step=step, artifact=artifact, key=key,
                       model=model, signature=signature, preprocess=pre, preprocess_key=pre_key)


def infer_signature(model: Any, example: Any = None) -> Signature:
    """Feature names and types from an input example, ``feature_names_in_``, or ``n_features_in_``."""
    if example is not None:
        columns = getattr(example, "columns", None)
        dtypes = getattr(example, "dtypes", None)
        if columns is not None and dtypes is not None:
            names = tuple(str(c) for c in columns)
            return Signature(names=names, types=tuple(_JSON_TYPES.get(dt.kind, "string") for dt in dtypes))
        shape = getattr(example, "shape", None)
        if shape is not None and len(shape) == 2:
            return Signature(width=int(shape[1]))
    fitted_names = getattr(model, "feature_names_in_", None)
    if fitted_names is not None:
        names = tuple(str(n) for n in fitted_names)
        return Signature(names=names, types=tuple("number" for _ in names))
    width = getattr(model, "n_features_in_", None)
    return Signature(width=int(width)) if isinstance(width, int) else Signature()


# -- rows to model input ------------------------------------------------------------------------

def _check_value(value: Any, kind: str, where: str) -> None:
    if kind in ("number", "integer"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadInput(where, f"{where} must be a {kind}")
        if isinstance(value, float) and not math.isfinite(value):
            raise BadInput(where, f"{where} must be a finite number (NaN and infinity are not allowed)")
        if kind == "integer" and isinstance(value, float) and not value.is_integer():
            raise BadInput(where, f"{where} must be an integer")
        if isinstance(value, int) and abs(value) > 2**53:
            raise BadInput(where, f"{where} is out of range for a number")
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise BadInput(where, f"{where} must be true or false")
    elif not isinstance(value, str):
        raise BadInput(where, f"{where} must be a string")


_MAX_INT = 2**53


def _plain_numbers(values: list[Any]) -> bool:
    """True when every value is a finite int or float within +-2**53: what a row of numbers
    usually is, checked in a few C-level passes. False sends the row to ``_check_value``, which
    names the bad value or accepts a large float."""
    return (all(type(v) is float or type(v) is int for v in values)
            and -_MAX_INT <= min(values) and max(values) <= _MAX_INT and math.isfinite(sum(values)))


def check_rows(rows: Any, sig: Signature, where: str = "instances") -> list[list[Any]]:
    """Check ``rows`` (lists of numbers, or objects of features): one list of values per row.

    Micro-batching joins the checked rows of several requests and builds one input of them."""
    if not isinstance(rows, list):
        raise BadInput(where, f"{where} must be a list of rows")
    if not rows:
        raise BadInput(where, f"{where} is empty; send at least one row")
    if sig.names:
        n = len(sig.names)
        numbers = all(t == "number" for t in sig.types)
        table: list[list[Any]] = []
        for i, row in enumerate(rows):
            at = f"{where}[{i}]"
            if isinstance(row, dict):
                missing = [c for c in sig.names if c not in row]
                if missing:
                    raise BadInput(f"{at}.{missing[0]}", f"{at} lacks the feature {missing[0]!r}; "
                                                       f"every row needs: {', '.join(sig.names)}")
                if len(row) != n:
                    extra = next(str(k) for k in row if k not in sig.names)
                    raise BadInput(f"{at}.{extra}", f"{at} has an unknown feature {extra[:64]!r}; "
                                                    f"the features are: {', '.join(sig.names)}")
                values = [row[c] for c in sig.names]
            elif isinstance(row, list):
                if len(row) != n:
                    raise BadInput(at, f"{at} has {len(row)} values; the model takes {n} ({', '.join(sig.names)})")
                values = row
            else:
                raise BadInput(at, f"{at} must be a list of {n} values or an object with the features "
                                   f"{', '.join(sig.names)}")
            if not (numbers and _plain_numbers(values)):
                for name, kind, value in zip(sig.names, sig.types, values):
                    _check_value(value, kind, f"{at}.{name}")
            table.append(values)
        return table
    width = sig.width or (len(rows[0]) if isinstance(rows[0], list) else 0)
    for i, row in enumerate(rows):
        at = f"{where}[{i}]"
        if not isinstance(row, list):
            raise BadInput(at, f"{at} must be a list of {width or 'some'} numbers")
        if len(row) != width or not row:
            raise BadInput(at, f"{at} has {len(row)} values; the model takes {width}")
        if _plain_numbers(row):
            continue
        for j, value in enumerate(row):
            _check_value(value, "number", f"{at}[{j}]")
    return rows


def build_input(table: list[list[Any]], sig: Signature) -> Any:
    """What the model takes for checked rows: a DataFrame with the feature columns when names are
    known (pandas is imported only then), else a 2-D float array."""
    import numpy as np

    if sig.names:
        import pandas as pd

        if all(t == "number" for t in sig.types):   # the common case, and the fast one
            return pd.DataFrame(np.asarray(table, dtype="float64"), columns=list(sig.names))
        return pd.DataFrame(table, columns=list(sig.names)).astype(
            {c: ("float64" if t == "number" else "int64" if t == "integer" else "bool" if t == "boolean" else object)
             for c, t in zip(sig.names, sig.types)})
    return np.asarray(table, dtype="float64")


def rows_to_input(rows: Any, sig: Signature, where: str = "instances") -> Any:
    """Check ``rows`` and build the model's input (``build_input(check_rows(...))``)."""
    return build_input(check_rows(rows, sig, where), sig)

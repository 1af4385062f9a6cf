"""The model side without a server: signatures, rows to inputs, preprocessing, CLI usage errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from keel.serve.model import BadInput, Signature, check_rows, infer_signature, load_model, rows_to_input


def test_an_input_example_gives_names_and_json_types():
    example = pd.DataFrame({"age": [31], "income": [1.5], "city": ["Oslo"], "member": [True]})
    sig = infer_signature(object(), example)
    assert sig.names == ("age", "income", "city", "member")
    assert sig.types == ("integer", "number", "string", "boolean")
    schema = sig.row_schema()
    assert schema["properties"]["city"] == {"type": "string"} and schema["required"] == list(sig.names)


def test_a_model_without_names_gives_its_width():
    class M:
        n_features_in_ = 3

    assert infer_signature(M()) == Signature(width=3)
    assert rows_to_input([[1, 2, 3]], Signature(width=3)).shape == (1, 3)
    with pytest.raises(BadInput) as info:
        rows_to_input([[1, 2]], Signature(width=3))
    assert info.value.field == "instances[0]"


def test_mixed_types_become_a_typed_dataframe():
    sig = Signature(names=("age", "city"), types=("integer", "string"))
    x = rows_to_input([{"age": 3, "city": "Oslo"}, [4, "Bergen"]], sig)
    assert list(x.dtypes.astype(str)) == ["int64", "object"] and x.city.tolist() == ["Oslo", "Bergen"]
    with pytest.raises(BadInput) as info:
        rows_to_input([{"age": 3.5, "city": "Oslo"}], sig)
    assert info.value.field == "instances[0].age" and "3.5" not in info.value.message


def test_preprocess_is_applied_before_the_model(store, monkeypatch):
    monkeypatch.setenv("KEEL_HOME", str(store))
    from keel import Run

    served = load_model("Train", 1, "scaled_model", preprocess="scaler")
    rng = np.random.default_rng(3)
    x = pd.DataFrame(rng.normal(size=(500, 4)) * 10 + 3, columns=list("abcd"))
    data = Run("Train/1").data
    offline = data.scaled_model.predict(data.scaler.transform(x)).tolist()
    online = served.predict(rows_to_input(x.values.tolist(), served.signature))
    assert online == offline and served.preprocess_key is not None


def _keel(*args: str, home) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "keel.cli.main", *args], capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin", "KEEL_HOME": str(home)})


@pytest.mark.parametrize("args, message", [
    (("serve", "Train/x"), "malformed target 'Train/x': give FLOW"),
    (("serve", "Train", "--max-body", "lots"), "--max-body 'lots' is not a size"),
    (("serve", "Train", "--log-table", "t"), "--log-table names the table of --log-requests"),
    (("serve", "Train", "--log-requests", "--log-table", "9-x"), "bad table name '9-x'"),
])
def test_usage_mistakes_exit_2_with_one_line(store, args, message):
    proc = _keel(*args, home=store)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_an_unknown_artifact_names_the_fix(store):
    proc = _keel("serve", "Train/1", "--artifact", "nope", home=store)
    assert proc.returncode == 2
    assert "run Train/1 has no artifact 'nope' in any step; give the artifact's name with --artifact NAME" in proc.stderr


@pytest.mark.parametrize("value, message", [(float("nan"), "finite"), (float("inf"), "finite"), (True, "number"),
                                            ("1", "number"), (2**60, "out of range")])
def test_a_bad_number_anywhere_in_a_row_is_named(value, message):
    row = [1.0, 2, 3.5]
    for at in range(3):
        bad = row[:at] + [value] + row[at + 1:]
        with pytest.raises(BadInput, match=message) as caught:
            check_rows([row, bad], Signature(width=3))
        assert caught.value.field == f"instances[1][{at}]"
        with pytest.raises(BadInput, match=message) as caught:
            check_rows([dict(zip("abc", bad))], Signature(names=("a", "b", "c"), types=("number",) * 3))
        assert caught.value.field == f"instances[0].{'abc'[at]}"


def test_large_finite_floats_are_numbers():
    assert check_rows([[1e300, -1e300, 2.0**60]], Signature(width=3)) == [[1e300, -1e300, 2.0**60]]

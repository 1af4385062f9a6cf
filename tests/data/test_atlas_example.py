"""The Atlas example end to end: CSV -> seeded splits -> Spark ML preprocessing fitted on the
training split -> Parquet row groups -> RowGroupLoader training -> a model serving can apply."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("pyspark")
pytest.importorskip("palmerpenguins")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "atlas" / "penguins.py"


@pytest.mark.slow
def test_the_penguins_pipeline_trains_from_spark_preprocessed_row_groups(keel_home):
    import pyarrow.parquet as pq

    from keel import Flow
    from keel.data.engine import DataEngine
    from keel_testing import run_in_process

    run_in_process(EXAMPLE, {"epochs": 20})
    run = Flow("PenguinsFlow").latest_run
    assert run.successful
    assert run["start"].task.data.missing > 0                       # the CSV has gaps to impute
    assert run["preprocess"].task.data.max_difference <= 1e-9         # Spark == pandas
    engine = DataEngine.from_env()
    sizes = run["start"].task.data.sizes
    for split in ("train", "validation", "test"):
        v = engine.version(f"penguins_{split}_features")
        assert v.rows == sizes[split] and v.lineage.startswith(f"PenguinsFlow/{run.id}/preprocess/")
    assert pq.ParquetFile(engine.paths("penguins_train_features")[0]).metadata.num_row_groups > 3
    assert run.data.accuracy > 0.9
    model = run["train"].task.data.model
    rows = engine.load("penguins_test").head(5)
    assert model.predict(rows.drop(columns=["species"]).to_dict("records")) == rows["species"].tolist()

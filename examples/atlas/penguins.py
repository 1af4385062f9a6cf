"""The Atlas pipeline on the Palmer penguins (a CSV that the palmerpenguins package ships):

    python examples/atlas/penguins.py run

start      read the CSV (missing values, categorical columns), split 60/20/20 with a seed,
           save each split through the Data Engine
preprocess Spark ML: Imputer, StringIndexer(handleInvalid="keep"), VectorAssembler,
           StandardScaler, fitted on the training split only, applied to every split; the
           features saved as Parquet with small row groups; the same preprocessing fitted
           with pandas alone must agree to 1e-9
train      softmax regression from RowGroupLoader batches; accuracy on the test split
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from keel import FlowSpec, Parameter, current, spark, step  # noqa: E402

from preprocessing import CATEGORICAL, LABEL, NUMERIC, PenguinModel, Preprocessor  # noqa: E402

SPLITS = ("train", "validation", "test")


class PenguinsFlow(FlowSpec):
    seed = Parameter("seed", default=7, help="split and training seed")
    epochs = Parameter("epochs", default=60, help="training epochs")

    @step
    def start(self):
        import numpy as np
        import pandas as pd
        import palmerpenguins

        csv = os.path.join(os.path.dirname(palmerpenguins.__file__), "data", "penguins.csv")
        frame = pd.read_csv(csv, na_values=["NA"]).drop(columns=["year"])
        frame.insert(0, "row_id", np.arange(len(frame), dtype=np.int64))
        for c in NUMERIC:
            frame[c] = frame[c].astype("float64")
        order = np.random.default_rng(self.seed).permutation(len(frame))
        cut1, cut2 = int(0.6 * len(frame)), int(0.8 * len(frame))
        parts = dict(zip(SPLITS, (order[:cut1], order[cut1:cut2], order[cut2:])))
        self.sizes = {}
        for name, rows in parts.items():
            part = frame.iloc[np.sort(rows)].reset_index(drop=True)
            current.data.save(f"penguins_{name}", part)
            self.sizes[name] = len(part)
        self.missing = int(frame[NUMERIC + CATEGORICAL].isna().sum().sum())
        self.next(self.preprocess)

    @spark(master="local[2]")
    @step
    def preprocess(self):
        import numpy as np
        from pyspark.ml import Pipeline
        from pyspark.ml.feature import Imputer, StandardScaler, StringIndexer, VectorAssembler
        from pyspark.ml.functions import vector_to_array

        session = current.spark
        session.conf.set("spark.sql.shuffle.partitions", "2")   # a few hundred rows: not 200 tasks a shuffle
        read = {s: session.read.parquet(*current.data.paths(f"penguins_{s}")) for s in SPLITS}
        imputed = [f"{c}_imputed" for c in NUMERIC]
        indexed = [f"{c}_index" for c in CATEGORICAL]
        pipeline = Pipeline(stages=[
            Imputer(inputCols=NUMERIC, outputCols=imputed, strategy="mean"),
            StringIndexer(inputCols=CATEGORICAL, outputCols=indexed, handleInvalid="keep",
                          stringOrderType="frequencyDesc"),
            StringIndexer(inputCol=LABEL, outputCol="label", handleInvalid="keep"),
            VectorAssembler(inputCols=imputed + indexed, outputCol="assembled"),
            StandardScaler(inputCol="assembled", outputCol="scaled", withMean=True, withStd=True),
        ])
        model = pipeline.fit(read["train"])                      # the training split only
        self.preprocessor = Preprocessor.from_spark(model)
        in_pandas = Preprocessor.fit_pandas(current.data.load("penguins_train"))
        self.max_difference = 0.0
        for s in SPLITS:
            # No orderBy: a narrow plan, so the executors write each split in one pass (no shuffle).
            out = model.transform(read[s]).select("row_id", vector_to_array("scaled").alias("features"), "label")
            version = current.data.save(f"penguins_{s}_features", out, row_group_size=32)
            saved = current.data.load(f"penguins_{s}_features", version=version).sort_values("row_id")
            spark_x = np.stack(saved["features"].to_numpy())
            raw = current.data.load(f"penguins_{s}").sort_values("row_id")
            pandas_x = in_pandas.transform(raw)
            self.max_difference = max(self.max_difference, float(np.abs(spark_x - pandas_x).max()))
        assert self.max_difference <= 1e-9, f"Spark and pandas disagree by {self.max_difference}"
        self.next(self.train)

    @step
    def train(self):
        import numpy as np
        from keel.data import RowGroupLoader

        k = len(self.preprocessor.classes)
        rng = np.random.default_rng(self.seed)
        weights, bias = rng.normal(0, 0.01, (6, k)), np.zeros(k)
        loader = RowGroupLoader("penguins_train_features", batch_size=16, seed=self.seed, prefetch=2)
        for epoch in range(self.epochs):
            losses = []
            for batch in loader:
                x, y = batch["features"], batch["label"].astype(int)
                logits = x @ weights + bias
                p = np.exp(logits - logits.max(axis=1, keepdims=True))
                p /= p.sum(axis=1, keepdims=True)
                losses.append(float(-np.log(p[np.arange(len(y)), y] + 1e-12).mean()))
                p[np.arange(len(y)), y] -= 1
                weights -= 0.1 * x.T @ p / len(y)
                bias -= 0.1 * p.mean(axis=0)
            current.log_metric("loss", float(np.mean(losses)), step=epoch)
        self.model = PenguinModel(self.preprocessor, weights, bias)
        test = current.data.load("penguins_test")
        self.accuracy = float(np.mean(np.array(self.model.predict(test)) == test[LABEL].to_numpy()))
        current.log_metric("test_accuracy", self.accuracy)
        self.next(self.end)

    @step
    def end(self):
        print(f"test accuracy {self.accuracy:.3f}; Spark vs pandas preprocessing differ by at most "
              f"{self.max_difference:.1e}")


if __name__ == "__main__":
    PenguinsFlow()

"""The penguins preprocessing, fitted by Spark ML or by pandas, applied anywhere (serving too).

Imputer (mean) on the numeric columns, StringIndexer (frequency order, ties alphabetical,
``handleInvalid="keep"``: unseen or missing categories get the last index) on the
categorical ones, assembled and standardised (mean 0, sample standard deviation 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
CATEGORICAL = ["island", "sex"]
LABEL = "species"


@dataclass(frozen=True)
class Preprocessor:
    means: tuple[float, ...]                    # imputer surrogates, per NUMERIC column
    labels: tuple[tuple[str, ...], ...]         # string indexer labels, per CATEGORICAL column
    center: tuple[float, ...]                   # scaler mean, per assembled column
    scale: tuple[float, ...]                    # scaler std, per assembled column
    classes: tuple[str, ...]                    # the label's indexer labels

    @classmethod
    def fit_pandas(cls, train: pd.DataFrame) -> "Preprocessor":
        means = tuple(float(train[c].astype(float).mean()) for c in NUMERIC)
        labels = tuple(_order(train[c]) for c in CATEGORICAL)
        partial = cls(means, labels, (0.0,) * 6, (1.0,) * 6, _order(train[LABEL]))
        raw = partial._assemble(train)
        return cls(means, labels, tuple(raw.mean(axis=0)), tuple(raw.std(axis=0, ddof=1)), partial.classes)

    @classmethod
    def from_spark(cls, model: Any) -> "Preprocessor":
        imputer, indexer, label_indexer, _assembler, scaler = model.stages
        surrogate = imputer.surrogateDF.first().asDict()
        return cls(tuple(float(surrogate[c]) for c in NUMERIC),
                   tuple(tuple(ls) for ls in indexer.labelsArray),
                   tuple(float(x) for x in scaler.mean), tuple(float(x) for x in scaler.std),
                   tuple(label_indexer.labelsArray[0]))

    def _assemble(self, frame: pd.DataFrame) -> np.ndarray:
        cols = [frame[c].astype(float).fillna(m).to_numpy() for c, m in zip(NUMERIC, self.means)]
        for c, labels in zip(CATEGORICAL, self.labels):
            index = {v: float(i) for i, v in enumerate(labels)}
            cols.append(np.array([index.get(v, float(len(labels))) if isinstance(v, str) else float(len(labels))
                                  for v in frame[c]]))
        return np.column_stack(cols)

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        raw = self._assemble(frame)
        scale = np.array(self.scale)
        return np.where(scale == 0, 0.0, (raw - np.array(self.center)) / np.where(scale == 0, 1, scale))


def _order(values: pd.Series) -> tuple[str, ...]:
    counts = values.dropna().astype(str).value_counts()
    return tuple(sorted(counts.index, key=lambda v: (-counts[v], v)))


@dataclass(frozen=True)
class PenguinModel:
    """Softmax regression over the preprocessed features: ``predict`` takes raw rows."""

    prep: Preprocessor
    weights: np.ndarray
    bias: np.ndarray

    def predict(self, rows: Any) -> list[str]:
        frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
        logits = self.prep.transform(frame) @ self.weights + self.bias
        return [self.prep.classes[i] for i in logits.argmax(axis=1)]

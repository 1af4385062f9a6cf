"""RowGroupLoader on real Parquet files: coverage, shuffling, reproducibility, sharding, resume."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from keel.data import RowGroupLoader
from keel.errors import UsageError


@pytest.fixture
def sorted_file(tmp_path):
    """10,000 rows sorted by label (10 labels), 100 row groups of 100 rows."""
    n = 10_000
    table = pa.table({"id": np.arange(n, dtype=np.int64), "label": np.repeat(np.arange(10), n // 10),
                      "x": np.random.default_rng(0).random((n,), dtype=np.float32)})
    path = tmp_path / "sorted.parquet"
    pq.write_table(table, path, row_group_size=100)
    return str(path)


def ids(loader) -> list[int]:
    return [int(i) for b in loader for i in b["id"]]


def test_an_epoch_yields_every_row_exactly_once(sorted_file):
    got = ids(RowGroupLoader(sorted_file, batch_size=64, seed=1))
    assert sorted(got) == list(range(10_000))


def test_batches_are_numpy_of_the_batch_size_with_a_short_last_one(sorted_file):
    batches = list(RowGroupLoader(sorted_file, batch_size=3000, seed=1))
    assert [len(b["id"]) for b in batches] == [3000, 3000, 3000, 1000]
    assert batches[0]["x"].dtype == np.float32 and set(batches[0]) == {"id", "label", "x"}
    assert [len(b["id"]) for b in RowGroupLoader(sorted_file, batch_size=3000, seed=1, drop_last=True)] == [3000] * 3


def test_the_same_seed_and_epoch_give_the_same_order_and_epochs_differ(sorted_file):
    a, b = RowGroupLoader(sorted_file, batch_size=100, seed=7), RowGroupLoader(sorted_file, batch_size=100, seed=7)
    first_a, first_b = ids(a), ids(b)
    assert first_a == first_b
    second_a = ids(a)
    assert second_a != first_a and sorted(second_a) == sorted(first_a)
    assert ids(RowGroupLoader(sorted_file, batch_size=100, seed=8)) != first_a


def test_batches_of_a_label_sorted_file_are_mixed(sorted_file):
    loader = RowGroupLoader(sorted_file, batch_size=256, seed=3, prefetch=4)
    distinct = [len(np.unique(b["label"])) for b in loader]
    # Unshuffled, a batch of 256 from sorted data holds 1 or 2 labels; mixing 4 random row
    # groups of 100 rows per window gives most batches 3 or more.
    assert np.mean(distinct) >= 3
    plain = [len(np.unique(b["label"])) for b in RowGroupLoader(sorted_file, batch_size=256, shuffle=False)]
    assert max(plain) <= 2
    positions = np.concatenate([b["id"] for b in RowGroupLoader(sorted_file, batch_size=256, seed=3)])
    # Where a row lands is unrelated to where it was: the rank correlation is near zero.
    assert abs(np.corrcoef(positions, np.arange(len(positions)))[0, 1]) < 0.2


def test_without_shuffle_rows_come_in_file_order_zero_copy(sorted_file):
    batches = list(RowGroupLoader(sorted_file, batch_size=50, shuffle=False))
    assert [int(i) for b in batches for i in b["id"]] == list(range(10_000))
    assert batches[0]["id"].base is not None  # a view on Arrow's buffer, not a copy


def test_ranks_split_the_rows_with_equal_batch_counts(sorted_file):
    loaders = [RowGroupLoader(sorted_file, batch_size=128, seed=5, rank=r, world_size=3) for r in range(3)]
    per_rank = [list(l) for l in loaders]
    assert len({len(b) for b in per_rank}) == 1 and len(per_rank[0]) == len(loaders[0])
    seen = [int(i) for batches in per_rank for b in batches for i in b["id"]]
    assert set(seen) == set(range(10_000)) and len(seen) - 10_000 <= 2  # ceil(10000/3)*3 = 10002


def test_state_dict_resumes_mid_epoch_at_the_next_row(sorted_file):
    full = RowGroupLoader(sorted_file, batch_size=96, seed=11)
    ids(full)  # epoch 0
    expected = ids(full)  # epoch 1
    first = RowGroupLoader(sorted_file, batch_size=96, seed=11)
    first.set_epoch(1)
    it = iter(first)
    head = [int(i) for _ in range(37) for i in next(it)["id"]]
    state = first.state_dict()
    it.close()
    resumed = RowGroupLoader(sorted_file, batch_size=96, seed=0)
    resumed.load_state_dict(state)
    assert head + ids(resumed) == expected
    assert resumed.epoch == 2


def test_columns_and_list_columns_become_2d_arrays(tmp_path):
    path = tmp_path / "lists.parquet"
    pq.write_table(pa.table({"v": pa.array([[float(i), float(i) + 1] for i in range(10)], pa.list_(pa.float32())),
                             "s": [str(i) for i in range(10)]}), path, row_group_size=4)
    batch = next(iter(RowGroupLoader(str(path), batch_size=10, shuffle=False, columns=["v"])))
    assert set(batch) == {"v"} and batch["v"].shape == (10, 2) and batch["v"][3, 1] == 4.0


def test_a_table_name_reads_the_data_engine_version(keel_home):
    import keel.data

    keel.data.save("t", pa.table({"id": list(range(10))}), row_group_size=3)
    keel.data.save("t", pa.table({"id": list(range(5))}))
    assert sorted(ids(RowGroupLoader("t@1", batch_size=4, seed=0))) == list(range(10))
    assert sorted(ids(RowGroupLoader("t", batch_size=4, seed=0))) == list(range(5))


def test_a_reader_error_is_raised_where_the_loop_runs(tmp_path):
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"id": list(range(10))}), path)
    loader = RowGroupLoader(str(path), batch_size=2)
    path.unlink()  # the footer was read; the background reader finds no file
    with pytest.raises(FileNotFoundError):
        list(loader)


def test_bad_arguments_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="batch_size"):
        RowGroupLoader(str(tmp_path), batch_size=0)
    with pytest.raises(UsageError, match="no Parquet file"):
        RowGroupLoader(str(tmp_path / "missing.parquet"), batch_size=1)
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"id": [1]}), path)
    with pytest.raises(UsageError, match=r"no column\(s\) nope in .*x.parquet; its columns are id"):
        RowGroupLoader(str(path), batch_size=1, columns=["nope"])
    with pytest.raises(UsageError, match="rank"):
        RowGroupLoader(str(tmp_path), batch_size=1, rank=2, world_size=2)


def test_torch_adapter_yields_tensors(sorted_file):
    torch = pytest.importorskip("torch")
    batch = next(iter(RowGroupLoader(sorted_file, batch_size=8, seed=0).torch()))
    assert isinstance(batch["x"], torch.Tensor) and batch["x"].shape == (8,)

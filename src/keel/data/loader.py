"""``RowGroupLoader``: training batches from Parquet, shuffled by row group, read ahead.

    loader = RowGroupLoader("train", batch_size=4096, seed=0)   # or a list of Parquet paths
    for epoch in range(5):
        for batch in loader:          # dict[str, numpy.ndarray]; one pass = one epoch
            ...

How an epoch is made, so that it is cheap, reproducible and bounded in memory:

1. The row groups of every file (from the Parquet footers alone) are put in an order drawn
   from ``(seed, epoch)``; every rank draws the same order.
2. That order is one stream of N rows; with ``world_size`` W each rank takes a contiguous
   share of ``ceil(N / W)`` rows (the last share wraps round to the stream's start, so every
   rank yields the same number of batches; at most W-1 rows are seen twice).
3. A rank's share is cut into windows of ``prefetch`` row groups. A background thread reads a
   window (pyarrow, GIL released), turns each column into one NumPy array and permutes the
   window's rows with a generator seeded by ``(seed, epoch, rank, window)``; batches are
   slices of that, and a batch that spans two windows joins the tail of one to the head of
   the next. Memory holds about three windows: the one in use, the next, one being read.

Because each window's permutation depends only on the seed, the epoch and its index,
``state_dict()`` is just ``(epoch, rows consumed)`` and resuming reads from the window that
holds the next row, with no replay.
"""

from __future__ import annotations

import math
import os
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from keel.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["RowGroupLoader"]

Batch = dict[str, "np.ndarray"]


@dataclass(frozen=True)
class _Group:
    file: int
    index: int
    rows: int


@dataclass(frozen=True)
class _Piece:
    """Rows ``start:stop`` of one row group."""

    group: _Group
    start: int
    stop: int


_END = object()


class RowGroupLoader:
    """Batches of a Parquet table as ``dict[str, numpy.ndarray]``; each iteration is one epoch.

    ``source`` is a Data Engine table (``"weather"``, ``"weather@3"``), a Parquet path, or a
    list of them. ``shuffle`` orders row groups and rows within a window of ``prefetch`` row
    groups at random, reproducibly from ``seed`` and the epoch (a ``seed`` of None draws one).
    ``rank``/``world_size`` give each data-parallel worker its own share with equal batch
    counts. ``state_dict()``/``load_state_dict()`` resume mid-epoch at the next row.
    """

    def __init__(self, source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], batch_size: int,
                 shuffle: bool = True, seed: int | None = None, prefetch: int = 2,
                 columns: list[str] | None = None, drop_last: bool = False, rank: int = 0,
                 world_size: int = 1):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise UsageError(f"RowGroupLoader: batch_size must be a positive integer, got {batch_size!r}")
        if not isinstance(prefetch, int) or prefetch < 1:
            raise UsageError(f"RowGroupLoader: prefetch must be a positive integer, got {prefetch!r}")
        if not isinstance(world_size, int) or world_size < 1 or not isinstance(rank, int) or not 0 <= rank < world_size:
            raise UsageError(f"RowGroupLoader: rank must be in 0..world_size-1, got rank={rank!r}, "
                             f"world_size={world_size!r}")
        import pyarrow.parquet as pq

        self.paths = _resolve(source)
        self.batch_size, self.shuffle, self.prefetch = batch_size, shuffle, prefetch
        self.columns, self.drop_last = columns, drop_last
        self.rank, self.world_size = rank, world_size
        self.seed = seed if seed is not None else int.from_bytes(os.urandom(4), "little")
        self._groups: list[_Group] = []
        for i, path in enumerate(self.paths):
            meta = pq.ParquetFile(path).metadata
            self._groups += [_Group(i, g, meta.row_group(g).num_rows) for g in range(meta.num_row_groups)
                             if meta.row_group(g).num_rows]
            if i == 0 and columns is not None:
                names = pq.ParquetFile(path).schema_arrow.names
                missing = [c for c in columns if c not in names]
                if missing:
                    raise UsageError(f"RowGroupLoader: no column(s) {', '.join(missing)} in {path}; "
                                     f"its columns are {', '.join(names)}")
        self.num_rows = sum(g.rows for g in self._groups)
        share = math.ceil(self.num_rows / world_size) if self.num_rows else 0
        self._share = share
        self._batches = share // batch_size if drop_last else math.ceil(share / batch_size)
        self._epoch = 0
        self._position = 0  # rows of the epoch already yielded (a multiple of batch_size)

    def __len__(self) -> int:
        """Batches per epoch on this rank (the same on every rank)."""
        return self._batches

    @property
    def epoch(self) -> int:
        """The epoch the next iteration runs."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Run ``epoch`` next, from its start (as ``DistributedSampler.set_epoch``)."""
        self._epoch, self._position = int(epoch), 0

    def state_dict(self) -> dict[str, int]:
        """Where the loader is: resume with ``load_state_dict`` in a new process."""
        return {"epoch": self._epoch, "position": self._position, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.seed = int(state.get("seed", self.seed))
        self._epoch, self._position = int(state["epoch"]), int(state["position"])

    def __iter__(self) -> Iterator[Batch]:
        epoch, position = self._epoch, self._position
        size = self.batch_size
        stop = self._batches * size if self.drop_last else self._share
        reader = _Reader(self, epoch, self._windows(epoch), position)
        try:
            carry: Batch | None = None
            while position < stop:
                chunk = reader.next()
                if chunk is None:
                    break
                n, pos = _rows(chunk), 0
                if carry is not None:  # a batch that spans two windows
                    need = size - _rows(carry)
                    if n < need:
                        carry = _concat([carry, chunk])
                        continue
                    batch = _concat([carry, {k: v[:need] for k, v in chunk.items()}])
                    carry, pos = None, need
                    position = self._position = position + size
                    yield batch
                while n - pos >= size and position < stop:
                    batch = {k: v[pos:pos + size] for k, v in chunk.items()}
                    pos += size
                    position = self._position = position + size
                    yield batch
                if pos < n:
                    carry = {k: v[pos:] for k, v in chunk.items()}
            if carry is not None and position < stop:
                position = self._position = position + _rows(carry)
                yield carry
        finally:
            reader.close()
        self._epoch, self._position = epoch + 1, 0

    def torch(self) -> Iterator[dict[str, Any]]:
        """The same batches as ``torch.Tensor`` (zero-copy from NumPy where the dtype allows)."""
        try:
            import torch
        except ImportError:
            raise UsageError("RowGroupLoader.torch() needs PyTorch: pip install torch") from None
        for batch in self:
            yield {k: (torch.from_numpy(v) if v.dtype.kind in "biuf" else v) for k, v in batch.items()}

    # -- the epoch's plan ------------------------------------------------------------------
    def _windows(self, epoch: int) -> list[list[_Piece]]:
        import numpy as np

        groups = list(self._groups)
        if self.shuffle and groups:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(groups))
            groups = [groups[i] for i in order]
        pieces = _share(groups, self.num_rows, self.rank * self._share, self._share)
        return [pieces[i:i + self.prefetch] for i in range(0, len(pieces), self.prefetch)]


def _share(groups: list[_Group], total: int, begin: int, size: int) -> list[_Piece]:
    """Rows ``begin:begin+size`` of the stream of ``groups``, wrapping round past its end."""
    out: list[_Piece] = []
    if not total:
        return out
    offset, want = begin % total, size
    starts, acc = [], 0
    for g in groups:
        starts.append(acc)
        acc += g.rows
    i = next(k for k, s in enumerate(starts) if s + groups[k].rows > offset)
    inner = offset - starts[i]
    while want > 0:
        g = groups[i]
        take = min(g.rows - inner, want)
        out.append(_Piece(g, inner, inner + take))
        want -= take
        inner = 0
        i = (i + 1) % len(groups)
    return out


def _rows(batch: Batch) -> int:
    return len(next(iter(batch.values()))) if batch else 0


def _concat(parts: list[Batch]) -> Batch:
    import numpy as np

    if len(parts) == 1:
        return parts[0]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


class _Reader:
    """The background thread: reads and permutes the windows, ``prefetch`` row groups each."""

    def __init__(self, loader: RowGroupLoader, epoch: int, windows: list[list[_Piece]], start: int):
        self._loader, self._epoch, self._windows = loader, epoch, windows
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        # The window that holds row ``start`` and where in it to begin.
        first, skip = 0, start
        for w in windows:
            rows = sum(p.stop - p.start for p in w)
            if skip < rows:
                break
            skip -= rows
            first += 1
        self._first, self._skip = first, skip
        self._thread = threading.Thread(target=self._run, name="keel-rowgroup-reader", daemon=True)
        self._thread.start()

    def next(self) -> Batch | None:
        item = self._queue.get()
        if item is _END:
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get_nowait()
            except queue.Empty:
                self._thread.join(0.05)

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        import numpy as np
        import pyarrow.parquet as pq

        loader = self._loader
        files: dict[int, Any] = {}
        try:
            for w in range(self._first, len(self._windows)):
                if self._stop.is_set():
                    return
                columns: dict[str, list[np.ndarray]] = {}
                for piece in self._windows[w]:
                    f = files.get(piece.group.file)
                    if f is None:
                        f = files[piece.group.file] = pq.ParquetFile(loader.paths[piece.group.file])
                    table = f.read_row_group(piece.group.index, columns=loader.columns)
                    if piece.start or piece.stop != table.num_rows:
                        table = table.slice(piece.start, piece.stop - piece.start)
                    for name, col in zip(table.column_names, table.columns):
                        columns.setdefault(name, []).append(_to_numpy(col, name))
                arrays = {k: (v[0] if len(v) == 1 else np.concatenate(v)) for k, v in columns.items()}
                if loader.shuffle and arrays:
                    n = len(next(iter(arrays.values())))
                    perm = np.random.default_rng([loader.seed, self._epoch, loader.rank, w]).permutation(n)
                    arrays = {k: v[perm] for k, v in arrays.items()}
                if w == self._first and self._skip:
                    arrays = {k: v[self._skip:] for k, v in arrays.items()}
                if not self._put(arrays):
                    return
            self._put(_END)
        except BaseException as exc:  # handed to the consumer, raised where it iterates
            self._put(exc)


def _to_numpy(col: Any, name: str) -> "np.ndarray":
    """One column as NumPy: zero-copy for fixed-width values without nulls; lists of equal
    length become a 2-D array; anything else an object array."""
    import pyarrow as pa

    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    t = arr.type
    if pa.types.is_fixed_size_list(t) and arr.null_count == 0:
        return arr.flatten().to_numpy(zero_copy_only=False).reshape(len(arr), t.list_size)
    if (pa.types.is_list(t) or pa.types.is_large_list(t)) and arr.null_count == 0 and len(arr):
        lengths = arr.value_lengths().to_numpy(zero_copy_only=False)
        if (lengths == lengths[0]).all():
            return arr.flatten().to_numpy(zero_copy_only=False).reshape(len(arr), int(lengths[0]))
    try:
        return arr.to_numpy(zero_copy_only=arr.null_count == 0 and (pa.types.is_integer(t) or pa.types.is_floating(t)))
    except (pa.ArrowInvalid, NotImplementedError):
        return arr.to_numpy(zero_copy_only=False)


def _resolve(source: Any) -> list[str]:
    if isinstance(source, (str, os.PathLike)) and not os.path.exists(source):
        text = os.fspath(source)
        if "/" not in text and not text.endswith(".parquet"):
            from keel.data.engine import parse_source
            from keel.runtime.current import current

            name, version = parse_source(text)
            return current.data.local_paths(name, version)
        raise UsageError(f"RowGroupLoader: no Parquet file at {text}")
    items = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    paths: list[str] = []
    for item in items:
        p = os.fspath(item)
        if os.path.isdir(p):
            paths += sorted(os.path.join(p, f) for f in os.listdir(p)
                            if not f.startswith((".", "_")) and os.path.isfile(os.path.join(p, f)))
        elif os.path.exists(p):
            paths.append(p)
        else:
            raise UsageError(f"RowGroupLoader: no Parquet file at {p}")
    if not paths:
        raise UsageError(f"RowGroupLoader: {source!r} holds no Parquet files")
    return paths

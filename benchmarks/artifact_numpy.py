"""A 1 GiB float64 array: ArtifactStore.put/get + .sum() against np.save/np.load + .sum().

Target (DESIGN.md): Keel within 2x of NumPy on the same disk, peak RSS under 3 GiB.

    python benchmarks/artifact_numpy.py [--dir DIR] [--gib 1.0] [--repeat 3]

Both sides write to files under DIR (default: a temp folder in the current directory,
so both use the same disk) and are run alternately; the best of --repeat runs is
reported. Numbers include the page cache as it is: neither side calls fsync.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time

import numpy as np

from keel.store.artifacts import ArtifactStore


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def numpy_round(array: np.ndarray, folder: str) -> tuple[float, float, float]:
    path = os.path.join(folder, "array.npy")
    t0 = time.perf_counter()
    np.save(path, array)
    t1 = time.perf_counter()
    total = float(np.load(path).sum())
    t2 = time.perf_counter()
    os.unlink(path)
    return t1 - t0, t2 - t1, total


def keel_round(array: np.ndarray, folder: str) -> tuple[float, float, float]:
    store = ArtifactStore.from_url(os.path.join(folder, "store"))
    t0 = time.perf_counter()
    ref = store.put(array)
    t1 = time.perf_counter()
    total = float(store.get(ref, what="benchmark array").sum())
    t2 = time.perf_counter()
    shutil.rmtree(os.path.join(folder, "store"))
    return t1 - t0, t2 - t1, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=".")
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    n = int(args.gib * 2**30) // 8
    array = np.random.default_rng(0).random(n)
    expected = float(array.sum())
    print(f"array: {array.nbytes / 2**30:.2f} GiB float64; folder: {os.path.abspath(args.dir)}")

    best = {"numpy": (float("inf"), 0.0, 0.0), "keel": (float("inf"), 0.0, 0.0)}
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="keel-bench-") as folder:
        for _ in range(args.repeat):
            for name, fn in (("numpy", numpy_round), ("keel", keel_round)):
                save, load, total = fn(array, folder)
                assert abs(total - expected) <= 1e-6 * abs(expected), (name, total, expected)
                if save + load < sum(best[name][:2]):
                    best[name] = (save, load, save + load)
    for name, (save, load, both) in best.items():
        print(f"{name:6s} save {save:6.3f} s   load+sum {load:6.3f} s   total {both:6.3f} s")
    ratio = best["keel"][2] / best["numpy"][2]
    print(f"ratio keel/numpy: {ratio:.2f} (target <= 2.0)")
    print(f"peak RSS: {_peak_rss_gib():.2f} GiB (target < 3.0)")


if __name__ == "__main__":
    main()

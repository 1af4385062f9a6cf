"""numpy1g baseline: the same work as the numpy1g flows with plain np.save / np.load.

Creates the same 1 GiB array (``ones``, the default, or ``random`` for numpy1g_random),
saves it to the current directory (the same temporary directory, on the same disk, that
the flows use for their stores), frees it, loads it back and sums it. Prints the phase
timings as one JSON line.

    python numpy1g_baseline.py [ones|random]
"""
import json
import sys
import time

import numpy as np

kind = sys.argv[1] if len(sys.argv) > 1 else "ones"
t0 = time.perf_counter()
if kind == "random":
    a = np.random.default_rng(0).random(1024**3 // 8)  # 1 GiB of float64
else:
    a = np.ones(1024**3 // 8)  # 1 GiB of float64
t1 = time.perf_counter()
np.save("a.npy", a)
t2 = time.perf_counter()
del a
b = np.load("a.npy")
t3 = time.perf_counter()
s = float(b.sum())
t4 = time.perf_counter()
assert kind == "random" or s == 1024**3 // 8, s
print(json.dumps({"create_s": t1 - t0, "save_s": t2 - t1, "load_s": t3 - t2, "sum_s": t4 - t3}))

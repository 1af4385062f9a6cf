"""Where `keel serve`'s cold start goes: CPU time (time.process_time) by phase, in fresh processes.

Phases, in the order `keel serve` runs them: the CLI (``keel.cli.main``, click), uvicorn,
Keel's app module, ``load_model`` (finding the artifact in the store and unpickling it: for a
scikit-learn model this imports scikit-learn), ``build_app``. Each artifact is measured in
``--repeat`` fresh interpreters and the median of each phase printed, with the modules that
readiness does not need (SQLAlchemy, FastAPI, pydantic) marked if they were imported.

    .venv/bin/python benchmarks/serve_phases.py [--repeat 5]

It trains the serving benchmark's flow (serve_bench.py: ``model`` is scikit-learn's
LogisticRegression, ``spin`` a plain Python object) into a temporary KEEL_HOME first.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

PHASES = r'''
import json, sys, time
T = time.process_time
marks = [T()]
import keel.cli.main; marks.append(T())
import uvicorn; marks.append(T())
import keel.serve.app as app; marks.append(T())
from keel.serve.model import load_model
from keel.serve.options import ServeOptions
from keel.serve.server import make_slot
model = load_model("Bench", 1, sys.argv[1]); marks.append(T())
options = ServeOptions(flow="Bench", run_id=1, artifact=sys.argv[1])
app.build_app(options, make_slot(options, model)); marks.append(T())
print(json.dumps({"phases": [b - a for a, b in zip(marks, marks[1:])], "total": T(),
                  "heavy": [m for m in ("sqlalchemy", "fastapi", "pydantic") if m in sys.modules]}))
'''
NAMES = ("cli", "uvicorn", "app module", "load_model", "build_app")


def main() -> None:
    import serve_bench

    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        env = {**os.environ, "KEEL_HOME": str(folder / ".keel")}
        (folder / "bench.py").write_text(serve_bench.FLOW)
        subprocess.run([sys.executable, "bench.py", "run", "--quiet"], cwd=folder, check=True, capture_output=True,
                       env=env)
        print(f"CPU ms by phase, median of {args.repeat} fresh processes (load average {os.getloadavg()[0]:.1f})")
        print(f"{'artifact':10s}" + "".join(f"{n:>12s}" for n in NAMES) + f"{'total':>10s}  imported")
        for artifact in ("spin", "model"):
            runs = [json.loads(subprocess.run([sys.executable, "-c", PHASES, artifact], cwd=folder, env=env,
                                              check=True, capture_output=True, text=True).stdout)
                    for _ in range(args.repeat)]
            phases = [statistics.median(r["phases"][i] for r in runs) * 1000 for i in range(len(NAMES))]
            total = statistics.median(r["total"] for r in runs) * 1000
            heavy = sorted({m for r in runs for m in r["heavy"]}) or ["none of sqlalchemy, fastapi, pydantic"]
            print(f"{artifact:10s}" + "".join(f"{p:10.0f}ms" for p in phases) + f"{total:8.0f}ms  {', '.join(heavy)}")
        print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

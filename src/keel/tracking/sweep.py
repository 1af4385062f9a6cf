"""Hyperparameter sweeps: ``keel sweep flow.py --param alpha=0.1,0.2 --param depth=2:8 --parallel 4``.

Each trial is an ordinary run of the flow (``keel run flow.py --alpha 0.1 --depth 2 ...``)
in its own process, tagged ``sweep:ID``; ``--parallel`` trials run at once (at most one per
core, each with its share of the cores as ``--max-workers``). A failed trial is reported and
the sweep goes on. At the end the best trials are printed, by ``--objective``.

Parameter spaces (``--param NAME=SPACE``):
  ``a,b,c``          these values (as the flow's Parameter would read them on the command line)
  ``2:8``            the integers 2..8
  ``0.1:0.5:0.1``    0.1, 0.2, ..., 0.5 (a step)
  ``1e-4:1e-1:log``  log-uniform (``--random`` and ``--optuna`` only)
  ``0.0:1.0``        uniform floats (``--random`` and ``--optuna`` only)

Modes: the full grid (default), ``--random N`` (N samples), ``--optuna N`` (N trials proposed
by Optuna's default sampler, told each trial's ``--objective``; needs ``pip install keel[sweep]``).
"""

from __future__ import annotations

import itertools
import math
import os
import random
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from keel.errors import UsageError

if TYPE_CHECKING:
    from keel.store.metadata import MetadataStore


@dataclass(frozen=True)
class Space:
    name: str
    values: tuple[str, ...] = ()       # a list of choices (as text)
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    integer: bool = False

    def grid(self) -> list[str]:
        if self.values:
            return list(self.values)
        assert self.low is not None and self.high is not None
        if self.integer and self.step is None:
            return [str(v) for v in range(int(self.low), int(self.high) + 1)]
        if self.step is None:
            raise UsageError(f"--param {self.name}={_fmt(self.low)}:{_fmt(self.high)} is a continuous range; a grid "
                             f"needs a list (a,b,c) or a step ({self.name}={_fmt(self.low)}:{_fmt(self.high)}:STEP), "
                             f"or sample it with --random N or --optuna N")
        n = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        vals = [self.low + i * self.step for i in range(n)]
        return [str(int(round(v))) if self.integer else _fmt(round(v, 12)) for v in vals]

    def sample(self, rng: random.Random) -> str:
        if self.values:
            return rng.choice(self.values)
        assert self.low is not None and self.high is not None
        if self.integer and not self.log:
            if self.step:
                return rng.choice(self.grid())
            return str(rng.randint(int(self.low), int(self.high)))
        if self.log:
            v = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
            return str(int(round(v))) if self.integer else _fmt(v)
        if self.step:
            return rng.choice(self.grid())
        return _fmt(rng.uniform(self.low, self.high))

    def suggest(self, trial: Any) -> str:
        if self.values:
            return str(trial.suggest_categorical(self.name, list(self.values)))
        assert self.low is not None and self.high is not None
        if self.integer:
            return str(trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log,
                                         step=int(self.step) if self.step and not self.log else 1))
        return _fmt(trial.suggest_float(self.name, self.low, self.high, log=self.log,
                                        step=self.step if self.step and not self.log else None))


def _fmt(v: float) -> str:
    return repr(float(v))


def _number(text: str, spec: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"--param {spec}: {text!r} is not a number; a range is LOW:HIGH[:STEP|:log], "
                         f"e.g. depth=2:8 or lr=1e-4:1e-1:log") from None


def parse_space(spec: str) -> Space:
    """``alpha=0.1,0.2`` / ``depth=2:8`` / ``lr=1e-4:1e-1:log`` -> Space, with one-line errors."""
    name, eq, body = spec.partition("=")
    name = name.strip().lstrip("-")
    if not eq or not name or not body.strip():
        raise UsageError(f"--param {spec!r}: expected NAME=VALUES, e.g. --param alpha=0.1,0.2,0.3 or --param depth=2:8")
    body = body.strip()
    if ":" in body and "," not in body:
        parts = body.split(":")
        if len(parts) not in (2, 3):
            raise UsageError(f"--param {spec}: a range is LOW:HIGH[:STEP|:log], e.g. depth=2:8 or lr=1e-4:1e-1:log")
        low, high = _number(parts[0], spec), _number(parts[1], spec)
        if high < low:
            raise UsageError(f"--param {spec}: the range goes down ({parts[0]} > {parts[1]}); write it LOW:HIGH")
        log = len(parts) == 3 and parts[2].strip().lower() == "log"
        step = None if len(parts) == 2 or log else _number(parts[2], spec)
        if step is not None and step <= 0:
            raise UsageError(f"--param {spec}: the step must be positive")
        if log and low <= 0:
            raise UsageError(f"--param {spec}: a log range needs LOW > 0")
        integer = all(p.strip().lstrip("+-").isdigit() for p in parts[:2]) and (step is None or float(step).is_integer())
        return Space(name, low=low, high=high, step=step, log=log, integer=integer)
    values = tuple(v.strip() for v in body.split(","))
    if not all(values):
        raise UsageError(f"--param {spec}: an empty value in the list; separate values with commas, e.g. a,b,c")
    return Space(name, values=values)


@dataclass
class Trial:
    number: int
    params: dict[str, str]
    run_id: int | None = None
    status: str = "pending"
    objective: float | None = None
    seconds: float = 0.0
    log: str = ""
    optuna: Any = field(default=None, repr=False)


@dataclass
class SweepOptions:
    flow_file: str
    spaces: list[Space]
    random: int | None = None
    optuna: int | None = None
    objective: str | None = None
    direction: str = "max"
    parallel: int = 1
    seed: int | None = None
    top: int = 5
    flow_name: str | None = None
    fixed: dict[str, str] = field(default_factory=dict)       # parameters every trial gets
    max_workers: int | None = None                            # per trial; default: cores / parallel
    max_num_splits: int | None = None
    executors: list[str] = field(default_factory=list)        # --with, for every trial
    tags: list[str] = field(default_factory=list)


def objective_value(metadata: MetadataStore, flow: str, run_id: int, objective: str) -> float | None:
    """The value of ``metrics.NAME`` (its last point) or ``duration`` for one run."""
    if objective == "duration":
        r = metadata.runs.get_run(flow, run_id)
        return (r.finished_at - r.created_at) if r is not None and r.finished_at else None
    from keel.tracking.search import last_metrics

    r = metadata.runs.get_run(flow, run_id)
    if r is None:
        return None
    name = objective.split(".", 1)[1]
    return last_metrics(metadata, [r], [name]).get((flow, run_id), {}).get(name)


def check_objective(objective: str | None) -> None:
    if objective is None:
        return
    if objective != "duration" and not (objective.startswith("metrics.") and len(objective) > 8):
        raise UsageError(f"--objective {objective}: give metrics.NAME (the metric's last value) or duration")


class Sweep:
    """Runs the trials of one sweep; ``run()`` returns them, best first when there is an objective."""

    def __init__(self, opts: SweepOptions, store: Any, flow: str, say: Callable[[str], None] = print):
        self.opts, self.store, self.flow, self.say = opts, store, flow, say
        self.id = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)
        self.tag = f"sweep:{self.id}"
        self.folder = Path(store.settings.home) / "sweeps" / self.id
        self.trials: list[Trial] = []
        self._lock = threading.Lock()
        self._procs: dict[int, subprocess.Popen] = {}
        self._stopping = False
        cpus = os.cpu_count() or 1
        self.parallel = max(1, min(opts.parallel, cpus))
        self.workers = max(1, cpus // self.parallel)

    # -- what to run -----------------------------------------------------------------------------
    def planned(self) -> list[dict[str, str]] | None:
        """The trials' parameters for grid and random sweeps (None for Optuna, which asks as it goes)."""
        o = self.opts
        if o.optuna:
            return None
        if o.random:
            rng = random.Random(o.seed)
            return [{s.name: s.sample(rng) for s in o.spaces} for _ in range(o.random)]
        grids = [s.grid() for s in o.spaces]
        return [dict(zip([s.name for s in o.spaces], combo)) for combo in itertools.product(*grids)]

    def command(self, trial: Trial) -> list[str]:
        """The trial's process: the one entry point with a serialized flow request."""
        from keel.runtime.entry import write_request

        o = self.opts
        request = str(self.folder / f"trial-{trial.number}.request.json")
        write_request(request, {
            "kind": "flow", "flow_file": os.path.abspath(o.flow_file), "flow_name": o.flow_name,
            "params": {**o.fixed, **{k: str(v) for k, v in trial.params.items()}},
            "tags": list(o.tags), "system_tags": [self.tag], "quiet": True, "max_workers": o.max_workers or self.workers,
            "max_num_splits": o.max_num_splits, "executors": list(o.executors)})
        return [sys.executable, "-m", "keel.runtime.entry", request, str(self.folder / f"trial-{trial.number}.id")]

    # -- running ---------------------------------------------------------------------------------
    def run(self) -> list[Trial]:
        o = self.opts
        self.folder.mkdir(parents=True, exist_ok=True)
        plan = self.planned()
        total = o.optuna if o.optuna else len(plan or [])
        study = None
        if o.optuna:
            try:
                import optuna
            except ImportError:
                raise UsageError("--optuna needs Optuna: pip install 'keel[sweep]' (or pip install optuna)") from None
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            sampler = optuna.samplers.TPESampler(seed=o.seed) if o.seed is not None else None
            study = optuna.create_study(direction="maximize" if o.direction == "max" else "minimize", sampler=sampler)
        capped = f" (at most {self.parallel} at once on {os.cpu_count()} cores)" if self.parallel < o.parallel else ""
        self.say(f"Sweep {self.id}: {total} trials of {self.flow}, {self.parallel} at a time{capped}; "
                 f"runs tagged {self.tag}")
        queue = list(enumerate(plan or [], start=1))
        next_number = itertools.count(1)

        def take() -> Trial | None:
            with self._lock:
                if self._stopping:
                    return None
                if study is None:
                    if not queue:
                        return None
                    number, params = queue.pop(0)
                    trial = Trial(number, params)
                else:
                    number = next(next_number)
                    if number > total:
                        return None
                    t = study.ask()
                    trial = Trial(number, {s.name: s.suggest(t) for s in o.spaces}, optuna=t)
                self.trials.append(trial)
                return trial

        def worker() -> None:
            while True:
                trial = take()
                if trial is None:
                    return
                self._run_trial(trial, total)
                if study is not None:
                    with self._lock:
                        if trial.objective is not None and trial.status == "succeeded":
                            study.tell(trial.optuna, trial.objective)
                        else:
                            study.tell(trial.optuna, state=optuna.trial.TrialState.FAIL)

        threads = [threading.Thread(target=worker, name=f"keel-sweep-{i}", daemon=True) for i in range(self.parallel)]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.2)
        except KeyboardInterrupt:
            self.stop()
            for t in threads:
                t.join(30)
            raise
        return self.ranked()

    def _run_trial(self, trial: Trial, total: int) -> None:
        log_path = self.folder / f"trial-{trial.number}.log"
        trial.log = str(log_path)
        started = time.time()
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(self.command(trial), stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
            with self._lock:
                self._procs[trial.number] = proc
            code = proc.wait()
            with self._lock:
                self._procs.pop(trial.number, None)
        trial.seconds = time.time() - started
        id_file = self.folder / f"trial-{trial.number}.id"
        try:
            trial.run_id = int(id_file.read_text().strip())
        except (OSError, ValueError):
            trial.run_id = None
        if trial.run_id is None:
            trial.status = "did not start"
        else:
            record = self.store.metadata.runs.get_run(self.flow, trial.run_id)
            trial.status = record.effective_status if record is not None else ("succeeded" if code == 0 else "failed")
            if self.opts.objective:
                trial.objective = objective_value(self.store.metadata, self.flow, trial.run_id, self.opts.objective)
        params = " ".join(f"{k}={v}" for k, v in trial.params.items())
        run = f"{self.flow}/{trial.run_id}" if trial.run_id else "no run"
        obj = f"  {self.opts.objective}={trial.objective:g}" if trial.objective is not None else ""
        hint = "" if trial.status == "succeeded" else f"  (log: {log_path})"
        self.say(f"  trial {trial.number}/{total}  {params}  -> {run} {trial.status}{obj}  "
                 f"{trial.seconds:.1f}s{hint}")

    def stop(self) -> None:
        """Ctrl-C: start no more trials and interrupt the running ones (each ends as interrupted)."""
        import signal

        with self._lock:
            self._stopping = True
            procs = list(self._procs.values())
        for proc in procs:
            try:
                proc.send_signal(signal.SIGINT)
            except ProcessLookupError:
                pass

    def ranked(self) -> list[Trial]:
        if not self.opts.objective:
            return sorted(self.trials, key=lambda t: t.number)
        sign = -1 if self.opts.direction == "max" else 1
        return sorted(self.trials, key=lambda t: (t.objective is None, sign * (t.objective or 0.0), t.number))

"""``resume [RUN_ID] [STEP]``: the command; the planning is :mod:`keel.runtime.resume`."""

from __future__ import annotations

from typing import Any

from keel.errors import UsageError, clip
from keel.store import Store


def cmd_resume(flow_cls: type, flow_file: str, positional: list[str], opts: Any, prog: str,
               startup: Any = None) -> int:
    """``positional``: [RUN_ID] [STEP] (a run id may be FLOW/RUN); ``opts``: flow_cli.RunOptions;
    ``startup``: a :class:`keel.cli.startup.StartupGC` to tell when the run starts."""
    from keel.cli.flow_cli import run_id_writer
    from keel.runtime.entry import exit_status, run
    from keel.runtime.resume import plan_resume, resume_request

    origin_id: int | None = None
    step: str | None = None
    from keel.ids import parse_id

    for value in positional:
        tail = value.rsplit("/", 1)[-1]
        digits = tail.isascii() and tail.isdigit()
        if digits and origin_id is None:
            origin_id = parse_id(tail, "run id", value)
        elif step is None and not digits:
            step = value
        else:
            raise UsageError(f"resume takes [RUN_ID] [STEP], got {clip(' '.join(positional))}")
    store = Store.from_env()
    plan = plan_resume(flow_cls, store, origin_id, step)
    where = f"from step '{plan.step}'" if plan.step else "where it stopped"
    print(f"Resuming {flow_cls.__name__}/{plan.origin_id} {where}: "
          f"{len(plan.reuse)} finished task(s) reused", flush=True)
    req = resume_request(flow_cls, flow_file, plan, tags=list(opts.tags), quiet=opts.quiet,
                         command=f"{prog} resume" if prog.startswith("python") else "",
                         executors=list(opts.executors),  # resume --with ray: the rest of the run on Ray
                         max_workers=opts.max_workers, max_num_splits=opts.max_num_splits,
                         branch=opts.branch, production=opts.production)
    on_started = run_id_writer(opts.run_id_file)
    if startup is not None:
        on_started = startup.started(on_started)
    return exit_status(run(req, store=store, on_started=on_started))

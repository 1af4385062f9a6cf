"""The task body where there is no scheduler next door: a Kubernetes pod.

    python -m keel.runtime.remote_task PAYLOAD_KEY        # KEEL_ARTIFACT_URL names the store

The scheduler put the task's payload (its TaskSpec and the flow class, by value) in the
artifact store under PAYLOAD_KEY. This runs the task, stores its result (the result dict and
its metric spools) the same way, and prints the result's key as the last line of its output,
where the executor, which follows the pod's log, finds it. The scheduler stays the only
writer of metadata.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import sys
import tempfile

RESULT_MARKER = "KEEL-RESULT "


def make_payload(spec: object, flow_cls: type) -> bytes:
    """What a pod needs to run one task: the spec and the flow class (by value)."""
    import cloudpickle

    module = sys.modules.get(flow_cls.__module__)
    by_value = module is not None and flow_cls.__module__ != "__main__"
    if by_value:
        cloudpickle.register_pickle_by_value(module)
    try:
        return cloudpickle.dumps({"spec": spec, "flow": flow_cls}, protocol=pickle.HIGHEST_PROTOCOL)
    finally:
        if by_value:
            cloudpickle.unregister_pickle_by_value(module)


def main(argv: list[str] | None = None) -> int:
    from keel.runtime.current import MetricSpool
    from keel.runtime.task import run_task
    from keel.store.artifacts import ArtifactStore

    args = sys.argv[1:] if argv is None else argv
    url = os.environ.get("KEEL_ARTIFACT_URL")
    if len(args) != 1 or not url:
        sys.stderr.write("usage: KEEL_ARTIFACT_URL=s3://bucket/prefix python -m keel.runtime.remote_task KEY\n")
        return 2
    store = ArtifactStore.from_url(url)
    payload = pickle.loads(store.get_bytes(args[0], what="the task's payload"))
    with tempfile.TemporaryDirectory(prefix="keel-task-") as tmp:
        spec = dataclasses.replace(payload["spec"], metrics_path=os.path.join(tmp, "metrics"), result_path="")
        result = run_task(spec, payload["flow"], store)
        metrics = {}
        for path in MetricSpool.files(spec.metrics_path):
            with open(path, "rb") as fh:
                data = fh.read().rstrip(b"\0")
            if data:
                metrics[path[len(spec.metrics_path):]] = data
    key = store.put_bytes(pickle.dumps({"result": result, "metrics": metrics}, protocol=pickle.HIGHEST_PROTOCOL))
    sys.stdout.flush()
    sys.stderr.flush()
    sys.stdout.write(f"\n{RESULT_MARKER}{key}\n")
    sys.stdout.flush()
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    raise SystemExit(main())

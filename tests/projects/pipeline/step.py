import os
import sys

from keel import current

name = sys.argv[1]
instance, instances = os.environ["KEEL_INSTANCE"], os.environ["KEEL_INSTANCES"]
assert os.path.exists("out/ingest.txt") or name == "after_flaky", "ingest must have run first"
print(f"{name}: instance {instance} of {instances}, current.instance={current.instance}")
current.log_metric(f"{name}_instance", int(instance))
with open(f"out/{name}-{instance}.txt", "w") as fh:
    fh.write(current.pathspec)

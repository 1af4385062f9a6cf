"""A plain script: `current` tells it which run and job it is part of, and tracks its metrics."""
import os

from keel import current

rows = int(os.environ["ROWS"])
os.makedirs("out", exist_ok=True)
print(f"ingest: {rows} rows for {current.pathspec} (run {current.run_id}, job {current.job_name})")
for i in range(rows):
    current.log_metric("rows_read", (i + 1) * 10, step=i)
current.tag("ingested")
with open("out/ingest.txt", "w") as fh:
    fh.write(str(rows))

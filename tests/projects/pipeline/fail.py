import sys

from keel import current

print(f"flaky: attempt {current.retry_count}")
sys.stderr.write("flaky: the source is down\n")
sys.exit(3)

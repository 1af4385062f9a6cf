import sys
import time

start = time.time()
time.sleep(0.3)
with open(f"{sys.argv[1]}.span", "w") as fh:
    fh.write(f"{start} {time.time()}")

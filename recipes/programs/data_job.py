"""A small data job, the program `make demo` runs in the local sandbox.

It reports progress the way many programs do (``Progress: 45.0% (9/20)``),
warns on stderr now and then, and takes about three seconds.
"""

import sys
import time

TOTAL = 20
print("Starting data processing...")
for i in range(TOTAL):
    time.sleep(0.15)
    print(f"Progress: {(i + 1) / TOTAL * 100:.1f}% ({i + 1}/{TOTAL})", flush=True)
    if i in (6, 13):
        print(f"Warning: slow batch {i}", file=sys.stderr, flush=True)
print("All steps completed!")

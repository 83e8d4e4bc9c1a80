"""`python -m benchmarks ...`: the same as `python benchmarks/bench.py ...`."""

import sys

from benchmarks.bench import main

sys.exit(main())

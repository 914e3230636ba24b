"""``python -m benchmarks.engines``: the guard on Redis, a Redis Cluster, Sentinel and PostgreSQL."""

import sys

from ._engines import main

if __name__ == "__main__":
    sys.exit(main())

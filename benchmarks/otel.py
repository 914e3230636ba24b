"""``python -m benchmarks.otel``: the hot path with the ``otel`` extra (no-op, SDK providers) and without."""

import sys

from ._otel import main

if __name__ == "__main__":
    sys.exit(main())

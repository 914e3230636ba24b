"""What the guard costs, as ratios against a bare Starlette app measured in the same run.

Run ``python -m benchmarks`` from the repository root (``--smoke`` for a quick check); see README.md.
"""

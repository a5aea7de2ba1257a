"""Benchmarks that back the project's recorded decisions with numbers.

Each module runs as `python -m benchmarks.<name>` and prints its measurements; results go in
BENCHMARKS.md. Tests may call a benchmark's core with tiny counts to check it still works, but
never assert on wall time.
"""

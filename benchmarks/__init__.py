"""Benchmark and security-analysis suites: ``python -m benchmarks SUITE [--quick] [--out DIR]``
(also ``mpc-market bench``); the older single scripts (clearing.py, settlement.py, ...) stay."""

"""Benchmark and security-analysis suites: ``python -m benchmarks SUITE [--quick] [--out DIR]`` from
the repository root (also ``mpc-market bench``). Each suite is a module ``bench_NAME`` with its
parameters in ``presets/NAME.toml``; ``suite.py`` is their shared frame."""

"""``mpc-market bench SUITE [--quick] [--out DIR] [--profiles [DAY]]``: the benchmark suites of a source checkout.

The suites live in ``benchmarks/`` next to the package (they are not installed); this command
runs ``python -m benchmarks`` there, so both spellings do the same thing.
"""

import os
import subprocess
import sys

from ..common.errors import InputError

# = benchmarks/suite.py's SUITES (what `all` runs), its EXTRA_SUITES, and all
SUITES = ('scaling', 'peers', 'mechanisms', 'baseline', 'latency', 'scenarios', 'mitigations',
          'clearing', 'settlement', 'rules', 'deployment', 'stats', 'round_params', 'flex', 'flood', 'all')


def checkout():
    """The source checkout holding benchmarks/, or None for an installed package."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return root if os.path.isfile(os.path.join(root, 'benchmarks', '__main__.py')) else None


def cmd_bench(args):
    root = checkout()
    if root is None:
        raise InputError('<command line>', 0, 'suite', 'the benchmark suites need a source checkout '
                         '(benchmarks/ next to mpc_market/)')
    command = [sys.executable, '-m', 'benchmarks', args.suite, *(['--quick'] if args.quick else []),
               *(['--out', os.path.abspath(args.out)] if args.out else []),
               *(['--profiles', args.profiles] if args.profiles else [])]
    return subprocess.call(command, cwd=root)


def add_parsers(sub, formatter):
    p = sub.add_parser('bench', help='run a benchmark suite: results.csv/json, plots and report.md',
                       formatter_class=formatter,
                       description='Run a benchmark suite of the source checkout (the same as python -m benchmarks '
                                   'SUITE): every row with the machine, versions, parameters, seed, timings per '
                                   'phase, bytes per node, peak memory and whether it equals the plaintext '
                                   'reference; PNG plots and a report.md. Parameters: benchmarks/presets/SUITE.toml.',
                       epilog='example:\n  mpc-market bench mechanisms --quick --out bench-results')
    p.add_argument('suite', choices=SUITES, help='which suite (all: every one but flood)')
    p.add_argument('--quick', action='store_true', help='the small preset: minutes per suite (what CI runs)')
    p.add_argument('--out', help='results directory (default: benchmarks/results/suites; with --quick '
                   'benchmarks/results/quick)')
    from ..market.profiles import DEFAULT_DAY
    p.add_argument('--profiles', nargs='?', const=DEFAULT_DAY, metavar='DAY',
                   help='communities from the BDEW H0 load profile and clear-sky PV of DAY instead of the built-in '
                        'shapes (needs pip install -e \'.[profiles]\')')
    p.set_defaults(func=cmd_bench)

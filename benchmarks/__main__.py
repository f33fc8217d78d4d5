"""``python -m benchmarks SUITE [--quick] [--out DIR]``: run a suite (or ``all``) and write its
results.csv, results.json, PNG plots and report.md; ``report DIR`` rewrites a directory from its results.json.
Run from the repository root (benchmarks/ is a package next to mpc_market/). The exit status is
1 when a row is not exact (for flood: an honest call failed or missed the bar)."""

import argparse
import os
import sys

from .suite import EXTRA_SUITES, SUITES, module, report, run_suite


def main(argv=None):
    """Run the command line.

    Args:
        argv: the arguments (default: sys.argv[1:]).

    Returns:
        The exit status: 0, or 1 when a row is not exact.
    """
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog='python -m benchmarks', description=__doc__)
    parser.add_argument('suite', choices=(*SUITES, *EXTRA_SUITES, 'all', 'report'),
                        help=f'what to run (all: {", ".join(SUITES)})')
    parser.add_argument('directory', nargs='?', help='report: a suite directory with results.json')
    parser.add_argument('--quick', action='store_true', help='the small preset (each suite in minutes, run by CI)')
    parser.add_argument('--out', help='results directory, one subdirectory per suite (default: benchmarks/results/'
                                      'suites, or benchmarks/results/quick with --quick, which git ignores)')
    parser.add_argument('--no-save', action='store_true', help='only print the figures, write no file')
    from mpc_market.market.profiles import DEFAULT_DAY
    parser.add_argument('--profiles', nargs='?', const=DEFAULT_DAY, metavar='DAY',
                        help=f'communities from the BDEW H0 load profile and clear-sky PV of DAY (default '
                             f'{DEFAULT_DAY}; needs pip install -e \'.[profiles]\') instead of the built-in shapes')
    # a suite's own options (flood --seconds ...) once it is named: its first bare argument
    named = next((a for a in argv if not a.startswith('-')), None)
    own = []
    if named in (*SUITES, *EXTRA_SUITES) and hasattr(module(named), 'options'):
        group = parser.add_argument_group(f'{named} options (each replaces the preset\'s parameter)')
        module(named).options(group)
        own = [a.dest for a in group._group_actions]
    args = parser.parse_args(argv)
    if args.profiles:
        from mpc_market.common.errors import InputError
        from mpc_market.market.profiles import parse_day
        try:
            parse_day(args.profiles)
        except InputError as e:  # one line, exit 2, like the command line
            parser.error(str(e))
    args.out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results',
                                        'quick' if args.quick else 'suites')
    if args.suite == 'report':
        if not args.directory:
            parser.error('report needs a suite directory')
        report(args.directory)
        print(f'wrote {os.path.join(args.directory, "report.md")}')
        return 0
    overrides = {dest: getattr(args, dest) for dest in own if getattr(args, dest) is not None}
    exact = True
    for name in SUITES if args.suite == 'all' else (args.suite,):
        print(f'suite {name}{" (quick)" if args.quick else ""}:', flush=True)
        directory, rows = run_suite(name, args.quick, args.out, args.profiles, overrides, save=not args.no_save)
        exact &= all(r.get('exact') is True for r in rows)
        if directory:
            print(f'wrote {directory}/results.csv, results.json, report.md and its plots', flush=True)
    return 0 if exact else 1


if __name__ == '__main__':
    sys.exit(main())

"""``python -m benchmarks SUITE [--quick] [--out DIR]``: run a suite (or ``all``) and write its
results.csv, results.json, PNG plots and report.md; ``report DIR`` redraws a results directory."""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the suites import `suite` and `common`

from suite import SUITES, report, run_suite  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m benchmarks', description=__doc__)
    parser.add_argument('suite', choices=(*SUITES, 'all', 'report'), help='what to run')
    parser.add_argument('directory', nargs='?', help='report: a suite directory with results.json')
    parser.add_argument('--quick', action='store_true', help='the small preset (each suite in minutes, run by CI)')
    parser.add_argument('--out', help='results directory, one subdirectory per suite (default: benchmarks/results/'
                                      'suites, or benchmarks/results/quick with --quick, which git ignores)')
    from mpc_market.market.profiles import DEFAULT_DAY
    parser.add_argument('--profiles', nargs='?', const=DEFAULT_DAY, metavar='DAY',
                        help=f'communities from the BDEW H0 load profile and clear-sky PV of DAY (default '
                             f'{DEFAULT_DAY}; needs pip install -e \'.[profiles]\') instead of the built-in shapes')
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
    for name in SUITES if args.suite == 'all' else (args.suite,):
        print(f'suite {name}{" (quick)" if args.quick else ""}:', flush=True)
        directory = run_suite(name, args.quick, args.out, args.profiles)
        print(f'wrote {directory}/results.csv, results.json, report.md and its plots', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())

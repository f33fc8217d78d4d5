"""Command line: ``mpc-market clear | settle | generate | demo | keys`` (local),
``node | broker | up | round | submit | results`` (deployment over gRPC) and ``stats ...``
(grid-operator statistics, see mpc_market/cli/stats.py)."""

import argparse
import sys

from ..common.errors import InputError, KeyFileError, MarketError
from .bench import add_parsers as add_bench_parsers
from .deploy import add_parsers as add_deployment_parsers
from .keys import add_parsers as add_keys_parsers
from .market import add_parsers as add_market_parsers
from .stats import add_parsers as add_stats_parsers


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every option with a default says it; epilogs (the examples) keep their lines."""

    def _get_help_string(self, action):
        if action.default in (None, False, argparse.SUPPRESS) or action.required or '(default' in (action.help or ''):
            return action.help
        return super()._get_help_string(action)


def build_parser():
    parser = argparse.ArgumentParser(
        prog='mpc-market', formatter_class=HelpFormatter,
        description='Privacy-preserving local electricity market: orders are cleared under secure multiparty '
                    'computation; nobody but their owner sees an order, a reading or a bill.',
        epilog='Local:       generate, clear, settle, demo, keys\n'
               'Deployment:  up, node, broker, round, submit, results\n'
               'Statistics:  stats keygen|encrypt|submit|aggregate|decrypt|aggregator|fetch\n'
               'Run `mpc-market COMMAND --help` for a command\'s options and examples; docs/ has the details.')
    sub = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')
    add_market_parsers(sub, HelpFormatter)
    add_keys_parsers(sub, HelpFormatter)
    add_deployment_parsers(sub, HelpFormatter)
    add_stats_parsers(sub, HelpFormatter)
    add_bench_parsers(sub, HelpFormatter)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (InputError, KeyFileError) as exc:  # bad input: a file, a key or its mode
        print(f'error: {exc}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('error: interrupted', file=sys.stderr)
        return 130
    except (MarketError, OSError) as exc:  # engine, key, network failures: one line, no traceback
        print(f'error: {exc}', file=sys.stderr)
        # a server that refused the request itself (a bad market, a bad round): bad input, not a lost link
        return 2 if getattr(exc, 'code', '') == 'INVALID_ARGUMENT' else 1

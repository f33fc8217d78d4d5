"""Command line: ``mpc-market clear | settle | generate | demo | keys`` (local),
``node | broker | up | round | submit | results`` (deployment over gRPC) and ``stats ...``
(grid-operator statistics, see mpc_market/cli/stats.py)."""

import argparse
import functools
import os
import sys

from ..common.errors import InputError, KeyFileError, MarketError
from .bench import add_parsers as add_bench_parsers
from .deploy import add_parsers as add_deployment_parsers
from .flex import add_parsers as add_flex_parsers
from .grid import add_parsers as add_grid_parsers
from .keys import add_parsers as add_keys_parsers
from .market import add_parsers as add_market_parsers
from .rounds import add_parsers as add_round_parsers
from .stats import add_parsers as add_stats_parsers


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every option with a default says it; epilogs (the examples) keep their lines."""

    def _get_help_string(self, action):
        if (action.default in (None, False, '', argparse.SUPPRESS) or action.required
                or '(default' in (action.help or '')):
            return action.help
        return super()._get_help_string(action)


def version() -> str:
    """The installed package's version (pyproject.toml's), else the source tree's."""
    from importlib import metadata
    try:
        return metadata.version('mpc_market')
    except metadata.PackageNotFoundError:
        import mpc_market
        return mpc_market.__version__


def _quiet_broken_pipe() -> int:
    """stdout's reader left (`mpc-market round list | head`): stop quietly, as `cat` does."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's last flush must not fail again
    except (OSError, ValueError):  # stdout is not a file descriptor (captured in a test)
        pass
    return 141  # 128 + SIGPIPE: what a shell reports for a writer whose pipe closed


def build_parser():
    parser = argparse.ArgumentParser(
        prog='mpc-market', formatter_class=HelpFormatter,
        description='Privacy-preserving local electricity market: orders are cleared under secure multiparty '
                    'computation; nobody but their owner sees an order, a reading or a bill.',
        epilog='Local:       generate, import, clear, settle, demo, keys\n'
               'Deployment:  up, node, broker, round, submit, results, meter\n'
               'Statistics:  stats keygen|encrypt|submit|aggregate|decrypt|aggregator|fetch\n'
               'Run `mpc-market COMMAND --help` for a command\'s options and examples; docs/ has the details.')
    parser.add_argument('--version', action='version', version=f'mpc-market {version()}')
    sub = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')
    add_market_parsers(sub, HelpFormatter)
    add_keys_parsers(sub, HelpFormatter)
    add_deployment_parsers(sub, HelpFormatter)
    add_round_parsers(sub, HelpFormatter)
    add_stats_parsers(sub, HelpFormatter)
    add_bench_parsers(sub, HelpFormatter)
    add_flex_parsers(sub, HelpFormatter)
    add_grid_parsers(sub, HelpFormatter)
    return parser


@functools.cache
def _parser() -> argparse.ArgumentParser:
    """The parser, built once per process: about 20 ms of argparse, which in-process callers running
    many commands (the tests: hundreds) would otherwise pay on every call; parsing leaves it unchanged."""
    return build_parser()


def main(argv=None):
    try:
        args = _parser().parse_args(argv)  # --help and --version write to stdout too
    except BrokenPipeError:
        return _quiet_broken_pipe()
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe is seen here, not in the interpreter's last flush
        return code
    except (InputError, KeyFileError) as exc:  # bad input: a file, a key or its mode
        print(f'error: {exc}', file=sys.stderr)
        return 2
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except KeyboardInterrupt:
        print('error: interrupted', file=sys.stderr)
        return 130
    except (MarketError, OSError) as exc:  # engine, key, network failures: one line, no traceback
        print(f'error: {exc}', file=sys.stderr)
        # a server that refused the request itself (a bad market, a bad round): bad input, not a lost link
        return 2 if getattr(exc, 'code', '') == 'INVALID_ARGUMENT' else 1

"""The options every daemon (``node``, ``broker``, ``stats aggregator``, ``up``) shares: logs and metrics."""

import argparse
import dataclasses

from ..common.logs import FORMATS, LEVELS


def address(value):
    """argparse type of "host:port" (the configs' rule)."""
    from ..net.config import ADDRESS_RE
    if not ADDRESS_RE.match(value):
        raise argparse.ArgumentTypeError(f'expected "host:port", got {value[:80]!r}')
    return value


def add_log_options(p):
    p.add_argument('--log-level', choices=LEVELS, default='info', help='least severe log events written')
    p.add_argument('--log-format', choices=FORMATS, default='text',
                   help='log lines: text (ISO 8601 UTC time, level, logger, message) or JSON lines')


def add_daemon_options(p, default_key):
    """--log-level, --log-format and --metrics (overriding the config file's metrics key)."""
    add_log_options(p)
    p.add_argument('--metrics', metavar='HOST:PORT', type=address,
                   help=f'serve Prometheus metrics (GET /metrics, plain HTTP, public counters only) on this address '
                        f'only, e.g. 127.0.0.1:9300; default: the config file\'s {default_key} key, else none')


def log_argv(args):
    """The log options again, for the daemons ``up`` starts."""
    return ['--log-level', args.log_level, '--log-format', args.log_format]


def start_daemon(args, config):
    """Configure logging; returns config with --metrics applied."""
    from ..common.logs import configure
    configure(args.log_level, args.log_format)
    return dataclasses.replace(config, metrics=args.metrics) if args.metrics is not None else config

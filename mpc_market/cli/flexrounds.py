"""``mpc-market flex submit``: offers into a deployment's flexibility round (opened with
``round open --flex REQUESTS.csv``; docs/flexibility.md; its results: ``mpc-market results``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def cmd_submit(args: argparse.Namespace) -> int:
    """flex submit: share, sign and send every participant's offers of --offers to every node.

    Args:
        args: --offers, --broker, --keys, --client, --round, --workers, --batch.

    Returns:
        0 when every participant was accepted by every node, else 1.

    Raises:
        InputError: a malformed offers file or a missing key.
        ClientError: the round is not an open flexibility round, or the broker refused.
    """
    from ..net.client import BrokerClient, submit_offers
    broker = BrokerClient(args.broker, args.keys, args.client)
    try:
        report = submit_offers(args.offers, broker, args.keys, args.round, args.client, args.workers, args.batch)
    finally:
        broker.close()
    print(f'round {report.round_id}: {len(report.accepted)} participants\' offers accepted by every node '
          f'in {report.seconds:.2f} s')
    for reason in report.failed.values():
        print(f'error: {reason}', file=sys.stderr)
    return 1 if report.failed else 0


def add_submit_parser(commands: Any, formatter: type[argparse.HelpFormatter]) -> None:
    """Register ``flex submit`` under the flex command's subparsers."""
    from .options import MAX_BATCH, MAX_WORKERS, bounded_int, client_args
    p = commands.add_parser('submit', help='share offers to the nodes of a deployment\'s flexibility round',
                            formatter_class=formatter,
                            description='Shares each participant\'s offers (the orders\' vector layout) to every '
                                        'node, signed with its key, as `mpc-market submit` shares orders.')
    client_args(p, 'submitter', 'optional')
    p.add_argument('--offers', required=True, help='offers CSV: participant,slot,direction,volume_wh,price')
    p.add_argument('--workers', type=bounded_int(1, MAX_WORKERS), default=4, help='participants submitted at once')
    p.add_argument('--batch', type=bounded_int(1, MAX_BATCH), default=64, help='participants per request')
    p.set_defaults(func=cmd_submit)

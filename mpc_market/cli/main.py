"""Command line: ``mpc-market clear | settle | generate | demo | keys`` (local),
``node | broker | up | round | submit | results`` (deployment over gRPC) and ``stats ...``
(grid-operator statistics, see mpc_market/cli/stats.py)."""

import argparse
import sys
from ..common.errors import InputError, MarketError
from .deploy import add_deployment_parsers
from .keys import cmd_keys
from .market import cmd_clear, cmd_demo, cmd_generate, cmd_settle


def build_parser():
    parser = argparse.ArgumentParser(prog='mpc-market', description='Privacy-preserving local electricity market')
    sub = parser.add_subparsers(dest='command', required=True)

    p = sub.add_parser('clear', help='clear an orders file (under MPC by default)')
    p.add_argument('--orders', required=True, help='orders CSV or JSON')
    p.add_argument('--config', required=True, help='market TOML')
    p.add_argument('--out', required=True, help='output directory')
    p.add_argument('--nodes', type=int, default=3, choices=range(3, 8), metavar='M', help='market nodes (3..7)')
    p.add_argument('--engine', choices=('mpc', 'plain'), default='mpc')
    p.add_argument('--mode', choices=('local', 'peers'), default='local',
                   help='peers: every participant runs its own node (scenario S1, at most 7)')
    p.add_argument('--chunk', type=int, default=8192, help='orders per streamed chunk (bounds node memory)')
    p.add_argument('--quiet', action='store_true')
    p.set_defaults(func=cmd_clear)

    p = sub.add_parser('settle', help='clear and settle deviations from meter readings; write bills')
    p.add_argument('--orders', required=True, help='orders CSV or JSON')
    p.add_argument('--readings', required=True, help='meter readings CSV: participant,slot,net_wh')
    p.add_argument('--config', required=True, help='market TOML')
    p.add_argument('--out', required=True, help='output directory')
    p.add_argument('--nodes', type=int, default=3, choices=range(3, 8), metavar='M', help='market nodes (3..7)')
    p.add_argument('--engine', choices=('mpc', 'plain'), default='mpc')
    p.add_argument('--mechanism', choices=('double-auction', 'sdr', 'mmr', 'bill-sharing'),
                   help='pricing mechanism (default: the market TOML\'s, else double-auction)')
    p.add_argument('--chunk', type=int, default=8192, help='orders per streamed chunk (bounds node memory)')
    p.add_argument('--quiet', action='store_true')
    p.set_defaults(func=cmd_settle)

    p = sub.add_parser('keys', help='create a CA, node TLS certificates and signing keys, participant keys')
    p.add_argument('action', choices=('ca', 'node', 'broker', 'aggregator', 'client', 'participants', 'all'))
    p.add_argument('--name', default='submitter', help='client certificate name (action client): submitter, '
                   'operator, a representative')
    p.add_argument('--dir', required=True, help='key directory (private keys are never overwritten)')
    p.add_argument('--index', type=int, default=0, help='node index (action node)')
    p.add_argument('--nodes', type=int, default=3, help='number of nodes (action all)')
    p.add_argument('--host', action='append', help='host name or IP of the node(s); repeat (default 127.0.0.1, localhost)')
    p.add_argument('--participant', action='append', help='participant id to register; repeat')
    p.add_argument('--orders', help='register every participant of this orders file')
    p.add_argument('--config', help='market TOML for reading --orders')
    p.set_defaults(func=cmd_keys)

    p = sub.add_parser('generate', help='write a realistic community: orders, meter readings, market config')
    p.add_argument('--participants', type=int, required=True)
    p.add_argument('--slots', type=int, default=96)
    p.add_argument('--seed', type=int, default=1)
    p.add_argument('--out', required=True)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser('demo', help='generate a community and clear it under MPC')
    p.add_argument('--participants', type=int, default=200)
    p.add_argument('--slots', type=int, default=96)
    p.add_argument('--nodes', type=int, default=3, choices=range(3, 8), metavar='M')
    p.add_argument('--seed', type=int, default=2026)
    p.set_defaults(func=cmd_demo)
    add_deployment_parsers(sub)
    from .stats import add_parsers
    add_parsers(sub)
    return parser



def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except InputError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('error: interrupted', file=sys.stderr)
        return 130
    except (MarketError, OSError) as exc:  # engine, key, network failures: one line, no traceback
        print(f'error: {exc}', file=sys.stderr)
        return 1

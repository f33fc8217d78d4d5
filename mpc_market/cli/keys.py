"""``mpc-market keys ...``: the deployment CA, node, broker, client and participant keys.
"""

import os
from ..common.errors import InputError, KeyFileError
from .market import default_config


def cmd_keys(args):
    from ..common import keys
    try:
        if args.action in ('ca', 'all'):
            keys.create_ca(args.dir)
            print(f'wrote CA to {os.path.join(args.dir, "ca")}')
        if args.action == 'broker':
            keys.create_broker(args.dir, args.host or ['127.0.0.1', 'localhost'])
            print(f'wrote the broker TLS certificate to {os.path.join(args.dir, "broker")}')
        if args.action == 'aggregator':
            keys.create_aggregator(args.dir, args.host or ['127.0.0.1', 'localhost'])
            print(f'wrote the statistics aggregator TLS certificate to {os.path.join(args.dir, "aggregator")}')
        if args.action == 'client':
            keys.create_client(args.dir, args.name)
            print(f'wrote client certificate {args.name} to {os.path.join(args.dir, "clients")}')
        if args.action == 'node':
            keys.create_node(args.dir, args.index, args.host or ['127.0.0.1', 'localhost'])
            print(f'wrote node{args.index} TLS certificate and signing key to {os.path.join(args.dir, "nodes")}')
        if args.action == 'all':
            for i in range(args.nodes):
                keys.create_node(args.dir, i, args.host or ['127.0.0.1', 'localhost'])
            print(f'wrote {args.nodes} node certificates and signing keys to {os.path.join(args.dir, "nodes")}')
            keys.create_broker(args.dir, args.host or ['127.0.0.1', 'localhost'])
            for client in ('submitter', 'operator'):
                keys.create_client(args.dir, client)
            print(f'wrote the broker certificate and submitter and operator client certificates to {args.dir}')
        if args.action in ('participants', 'all'):
            names = list(args.participant or [])
            if args.orders:
                from ..market.config import load_config
                from ..market.orders import load_orders
                config = load_config(args.config) if args.config else None
                names += sorted({o.participant for o in load_orders(args.orders, config or default_config())})
            if names:
                keys.create_participants(args.dir, names)
                print(f'registered {len(names)} participants in {os.path.join(args.dir, "registry.json")}')
    except KeyFileError as exc:
        raise InputError(args.dir, 0, 'keys', str(exc)) from None
    return 0

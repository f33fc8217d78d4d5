"""``mpc-market keys ACTION``: the deployment CA, node, broker, aggregator, client and participant keys."""

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
            keys.create_broker(args.dir, getattr(args, 'host', None) or ['127.0.0.1', 'localhost'])
            print(f'wrote the broker TLS certificate to {os.path.join(args.dir, "broker")}')
        if args.action == 'aggregator':
            keys.create_aggregator(args.dir, getattr(args, 'host', None) or ['127.0.0.1', 'localhost'])
            print(f'wrote the statistics aggregator TLS certificate to {os.path.join(args.dir, "aggregator")}')
        if args.action == 'client':
            keys.create_client(args.dir, args.name)
            print(f'wrote client certificate {args.name} to {os.path.join(args.dir, "clients")}')
        if args.action == 'node':
            keys.create_node(args.dir, args.index, getattr(args, 'host', None) or ['127.0.0.1', 'localhost'])
            print(f'wrote node{args.index} TLS certificate and signing key to {os.path.join(args.dir, "nodes")}')
        if args.action == 'all':
            for i in range(args.nodes):
                keys.create_node(args.dir, i, getattr(args, 'host', None) or ['127.0.0.1', 'localhost'])
            print(f'wrote {args.nodes} node certificates and signing keys to {os.path.join(args.dir, "nodes")}')
            keys.create_broker(args.dir, getattr(args, 'host', None) or ['127.0.0.1', 'localhost'])
            for client in ('submitter', 'operator'):
                keys.create_client(args.dir, client)
            print(f'wrote the broker certificate and submitter and operator client certificates to {args.dir}')
        if args.action in ('manifest', 'all'):
            _write_manifest(args)
        if args.action in ('participants', 'all'):
            names = list(getattr(args, 'participant', None) or [])
            if getattr(args, 'orders', None):
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


DEFAULT_NODE_PORT = 7301


def _write_manifest(args):
    """The deployment manifest of the nodes in args.dir, at --node-address (default host:7301 per --host)."""
    from ..common.manifest import manifest_from_keys, write_manifest
    count = args.nodes
    given = list(getattr(args, 'node_address', None) or [])
    if given and len(given) != count:
        raise InputError('<command line>', 0, 'node-address', f'give one --node-address per node ({count}), '
                         f'not {len(given)}')
    addresses = [[a] for a in given] or [[f'127.0.0.1:{DEFAULT_NODE_PORT + i}'] for i in range(count)]
    path = write_manifest(args.dir, manifest_from_keys(args.dir, addresses))
    print(f'wrote the deployment manifest ({count} nodes, threshold {(count - 1) // 2}) to {path}: give it to every '
          'participant with ca/ca.pem')


HOSTS_HELP = 'host name or IP the certificate is valid for; repeat (default: 127.0.0.1 and localhost)'


def add_parsers(sub, formatter):
    from .options import bounded_int
    keys = sub.add_parser('keys', help='create the CA, node, broker, aggregator, client and participant keys',
                          formatter_class=formatter,
                          description='Key material of a deployment, in one directory: ca/, nodes/, broker/, '
                                      'aggregator/, clients/, participants/ and registry.json. Private keys are '
                                      'written 0600 in 0700 directories and never overwritten.',
                          epilog='examples:\n'
                                 '  mpc-market keys all --dir keys --orders community/orders.csv   # a whole '
                                 'local deployment\n'
                                 '  mpc-market keys ca --dir keys\n'
                                 '  mpc-market keys node --dir keys --index 0 --host node0.example.org\n'
                                 '  mpc-market keys client --dir keys --name operator\n'
                                 '  mpc-market keys participants --dir keys --participant h001 --participant h002')
    actions = keys.add_subparsers(dest='action', required=True, metavar='ACTION')

    def action(name, help_text, description):
        p = actions.add_parser(name, help=help_text, description=description, formatter_class=formatter)
        p.add_argument('--dir', required=True, help='key directory')
        p.set_defaults(func=cmd_keys)
        return p

    action('ca', 'a new certificate authority (once per deployment)',
           'Create ca/ca.key and ca/ca.pem; every certificate of the deployment is issued by it.')
    p = action('node', 'one market node: TLS certificate and Ed25519 signing key',
               'Create nodes/nodeI.{key,pem} (TLS, name nodeI) and nodes/nodeI.sign.{key,pub} (receipts, results).')
    p.add_argument('--index', type=bounded_int(0, 6), default=0, help='node index I, 0..6 (node 0 first)')
    p.add_argument('--host', action='append', help=HOSTS_HELP)
    p = action('broker', 'the broker\'s TLS certificate', 'Create broker/broker.{key,pem} (TLS, name broker).')
    p.add_argument('--host', action='append', help=HOSTS_HELP)
    p = action('aggregator', 'the statistics aggregator\'s TLS certificate',
               'Create aggregator/aggregator.{key,pem} (TLS, name aggregator).')
    p.add_argument('--host', action='append', help=HOSTS_HELP)
    p = action('client', 'a client certificate (submitter, operator, a representative, an operator\'s DSO/TSO)',
               'Create clients/NAME.{key,pem}; the name is what servers authorize (e.g. operators may open rounds).')
    p.add_argument('--name', default='submitter', help='certificate name; node, broker and aggregator names are '
                   'reserved')
    p = action('participants', 'register participants: Ed25519 signing and X25519 result keys',
               'Create participants/ID.key and ID.kex.key for each participant and add their public keys to '
               'registry.json (the nodes\' list of who may submit).')
    p.add_argument('--participant', action='append', help='participant id to register; repeat')
    p.add_argument('--orders', help='register every participant of this orders file')
    p.add_argument('--config', help='market TOML for reading --orders (default: a market that accepts any order)')
    p = action('all', 'everything a local deployment needs: CA, nodes, broker, submitter, operator, participants',
               'Create the CA, NODES node keys, the broker certificate, the submitter and operator client '
               'certificates and, with --orders or --participant, the participants\' keys.')
    p.add_argument('--nodes', type=bounded_int(3, 7), default=3, help='market nodes, 3..7 (as a deployment)')
    p.add_argument('--host', action='append', help=HOSTS_HELP)
    p.add_argument('--participant', action='append', help='participant id to register; repeat')
    p.add_argument('--orders', help='register every participant of this orders file')
    p.add_argument('--config', help='market TOML for reading --orders')
    p.add_argument('--node-address', action='append', metavar='HOST:PORT',
                   help='node I serves gRPC at HOST:PORT, in node order; repeat once per node (default '
                        f'127.0.0.1:{DEFAULT_NODE_PORT}+I)')
    p = action('manifest', 'the deployment manifest participants trust instead of the broker',
               'Write manifest.json from nodes/nodeI.sign.pub: m, the threshold t = (m-1)/2, and per node its '
               'index, certificate name, gRPC address and signing key. Participants get it with ca/ca.pem, out of '
               'band; every client command shares with exactly these nodes and checks all their signatures.')
    p.add_argument('--nodes', type=bounded_int(3, 7), default=3, help='market nodes, 3..7')
    p.add_argument('--node-address', action='append', metavar='HOST:PORT',
                   help='node I serves gRPC at HOST:PORT, in node order; repeat once per node')

"""``mpc-market grid check``: the DSO's congestion loop on a simbench LV grid (docs/flexibility.md,
"The congestion loop"): a power flow per slot on the planned net positions, the violations, and
the flexibility requests that relieve them (requests.csv, ``flex clear``'s input).
"""

from __future__ import annotations

import argparse
from decimal import Decimal
from typing import Any

from ..common.errors import COMMAND_LINE, InputError
from ..market.gridcheck import CheckResult, Positions
from ..market.output import csv_text, write_all

FLOW_COLUMNS = ('slot', 'slot_start', 'trafo_loading_pct', 'line_loading_pct', 'vm_min_pu', 'vm_max_pu',
                'violations', 'relieved')
REQUEST_COLUMNS = ('request', 'buyer', 'feeder', 'slot', 'slot_start', 'direction', 'volume_wh', 'price_cap')


def _positions(args: argparse.Namespace, feeder_of: dict[str, str]) -> tuple[Positions, Any]:
    """The positions of --positions or --orders (--per-feeder: summed per feeder), then --activations.

    Raises:
        InputError: neither or both given, --orders without --config, or a malformed file.
    """
    from ..market.config import load_config
    from ..market.gridcheck import apply_activations, feeder_positions, load_positions, positions_from_orders
    from ..market.orders import load_orders
    if (args.positions is None) == (args.orders is None):
        raise InputError(COMMAND_LINE, 0, 'positions', 'give --positions P.csv or --orders O.csv (one of them)')
    config = load_config(args.config) if args.config else None
    if args.orders is not None:
        if config is None:
            raise InputError(COMMAND_LINE, 0, 'config', '--orders needs --config (the market file)')
        positions = positions_from_orders(load_orders(args.orders, config))
    else:
        positions = load_positions(args.positions)
    if args.per_feeder:
        positions = feeder_positions(positions, feeder_of)
    if args.activations:
        positions = apply_activations(positions, args.activations, feeder_of)
    return positions, config


def files(result: CheckResult, config: Any) -> dict[str, str]:
    """flows.csv (per slot) and requests.csv (flex's request format) of a check.

    Args:
        result: the check.
        config: the market (slot times) or None.

    Returns:
        {file name: CSV text}.
    """
    def start(slot: int) -> str:
        return '' if config is None else config.slot_start_text(slot)
    flows = [{'slot': f.slot, 'slot_start': start(f.slot), 'trafo_loading_pct': f'{f.trafo_pct:.1f}',
              'line_loading_pct': f'{f.line_pct:.1f}', 'vm_min_pu': f'{f.vm_min:.4f}', 'vm_max_pu': f'{f.vm_max:.4f}',
              'violations': ' '.join(v.element for v in f.violations), 'relieved': 'yes' if f.relieved else 'no'}
             for f in result.flows]
    requests = [{'request': r.request, 'buyer': 'dso', 'feeder': r.feeder, 'slot': r.slot, 'slot_start': start(r.slot),
                 'direction': r.direction, 'volume_wh': r.volume_wh, 'price_cap': str(r.price_cap)}
                for r in result.requests]
    return {'flows.csv': csv_text(FLOW_COLUMNS, flows), 'requests.csv': csv_text(REQUEST_COLUMNS, requests)}


def cmd_check(args: argparse.Namespace) -> int:
    """grid check: power flow per slot, violations, relieving requests.

    Args:
        args: --grid, --positions | --orders (+ --config), --per-feeder, --activations, --price-cap, --out.

    Returns:
        0 (violations are findings, not errors: requests.csv holds what relieves them).

    Raises:
        InputError: a bad grid code, a malformed file, or a power flow that does not converge.
    """
    from ..market.grid import grid_net, parse_grid
    from ..market.gridcheck import FlowModel, check
    net, grid = grid_net(parse_grid(args.grid))
    positions, config = _positions(args, {p.name: p.feeder for p in grid.participants})
    result = check(FlowModel(net, grid), positions, price_cap=Decimal(args.price_cap))
    paths = write_all(args.out, files(result, config))
    bad = [f for f in result.flows if f.violations]
    worst = max(result.flows, key=lambda f: f.trafo_pct, default=None)
    print(f'simbench:{grid.code}: {len(result.flows)} slots, {len(bad)} with a violation'
          + (f' (worst transformer loading {worst.trafo_pct:.1f} % in slot {worst.slot})' if worst else ''))
    unrelieved = [f.slot for f in bad if not f.relieved]
    if unrelieved:
        print(f'warning: slots {", ".join(map(str, unrelieved))} stay violated even without their feeders\' '
              'positions; their requests ask for the whole positions')
    volume = sum(r.volume_wh for r in result.requests)
    print(f'{len(result.requests)} DSO requests, {volume} Wh in all' if result.requests else 'no violation: no request')
    print('wrote ' + ', '.join(paths))
    return 0


def add_parsers(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    """Register ``grid check`` on the main parser's subparsers ``sub``, with the help ``formatter``."""
    from ..market.gridcheck import DEFAULT_PRICE_CAP
    from .options import decimal_text
    p = sub.add_parser('grid', formatter_class=formatter,
                       help='the DSO\'s congestion loop: power flow on the planned positions, flexibility requests',
                       description='Needs the optional extra [grid] (pandapower, simbench); see '
                                   'docs/flexibility.md, "The congestion loop".'
                       ).add_subparsers(dest='grid_command', required=True, metavar='COMMAND').add_parser(
        'check', help='power flow per slot; write the requests that relieve the violations', formatter_class=formatter,
        description='Runs a power flow per slot on the net positions, finds transformers and lines above 100 % and '
                    'buses outside 0.95..1.05 pu, and writes flows.csv (per slot) and requests.csv (DSO requests per '
                    'feeder and slot).',
        epilog='example:\n  mpc-market grid check --grid simbench:1-LV-rural1--2-sw --orders g/orders.csv '
               '--config g/market.toml --per-feeder --out check/')
    p.add_argument('--grid', required=True, metavar='simbench:CODE', help='a simbench LV grid')
    p.add_argument('--positions', help='positions CSV: participant,slot,net_wh or feeder,slot,net_wh (+ import)')
    p.add_argument('--orders', help='or the energy orders CSV: their planned positions (needs --config)')
    p.add_argument('--config', help='market TOML (slot_start in the outputs; the orders\' market)')
    p.add_argument('--per-feeder', action='store_true',
                   help='sum the positions per feeder first (what the nodes release to the DSO)')
    p.add_argument('--activations', help='activations.csv of flex clear: check the positions after them')
    p.add_argument('--price-cap', type=decimal_text, default=str(DEFAULT_PRICE_CAP), metavar='PRICE',
                   help='the requests\' cap, currency per kWh')
    p.add_argument('--out', required=True, help='output directory')
    p.set_defaults(func=cmd_check)

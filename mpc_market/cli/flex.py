"""``mpc-market flex clear | settle | curve``: the flexibility market run locally (docs/flexibility.md).

clear writes requests.csv (each request's public outcome) and activations.csv (each offer's
activation and payment); settle clears the same way, then settles delivery against the meter
readings: deliveries.csv (payment and penalty per activation) and imbalances.csv (each energy
participant's deviation from its adjusted position, by the energy market's rule) and bills.csv
(trade, deviation, flexibility revenue and penalty per participant); curve writes
the aggregator's view (curve.csv: the community's curve where at least min_cohort offer).
"""

from __future__ import annotations

import argparse
from typing import Any

from ..market.config import MarketConfig, load_config
from ..market.flex import (
    FlexBill,
    FlexCurve,
    FlexMarket,
    FlexResult,
    FlexSettlement,
    clear_flex_plain,
    flex_bills,
    flex_curve_plain,
    load_feeders,
    load_offers,
    load_requests,
    settle_flex_plain,
)
from ..market.output import csv_text, write_all

REQUEST_COLUMNS = ('request', 'buyer', 'feeder', 'slot', 'slot_start', 'direction', 'volume_wh', 'price_cap',
                   'level', 'price', 'procured_wh', 'residual_wh', 'shortfall_wh')
ACTIVATION_COLUMNS = ('participant', 'slot', 'slot_start', 'direction', 'offered_wh', 'request', 'activated_wh',
                      'price', 'payment')
DELIVERY_COLUMNS = ('participant', 'slot', 'slot_start', 'direction', 'request', 'activated_wh', 'planned_wh',
                    'adjusted_wh', 'net_wh', 'delivered_wh', 'undelivered_wh', 'payment', 'penalty', 'flex_net')
CURVE_COLUMNS = ('slot', 'slot_start', 'direction', 'open', 'level', 'price', 'volume_wh')
BILL_COLUMNS = ('participant', 'trade_amount', 'deviation_amount', 'flex_revenue', 'flex_penalty', 'total_amount')
IMBALANCE_COLUMNS = ('participant', 'slot', 'slot_start', 'planned_wh', 'adjusted_wh', 'net_wh', 'deviation_wh',
                     'amount')


def load_market(args: argparse.Namespace) -> FlexMarket:
    """The flexibility market of the command's files.

    Args:
        args: --config, --requests, --offers, --feeders (optional), --pay-as-bid.

    Returns:
        The FlexMarket; feeders from --feeders, else the market file's [zones].

    Raises:
        InputError: a file is unreadable or malformed (file, line and field).
    """
    config = load_config(args.config)
    feeder_of = load_feeders(args.feeders) if args.feeders else dict(config.zone_of)
    return FlexMarket(config, tuple(load_requests(args.requests, config)), tuple(load_offers(args.offers, config)),
                      feeder_of, 'pay-as-bid' if args.pay_as_bid else config.flex_pricing)


def clear_market(market: FlexMarket, args: argparse.Namespace) -> FlexResult:
    """Clear with the engine the command names (mpc: node processes; plain: the reference)."""
    if args.engine == 'plain':
        return clear_flex_plain(market)
    from ..mpc.flex_local import clear_flex_mpc
    return clear_flex_mpc(market, nodes=args.nodes)


def _price(config: MarketConfig, units: int | None) -> str:
    return '' if units is None else config.format_price(units)


def result_files(market: FlexMarket, result: FlexResult) -> dict[str, str]:
    """requests.csv and activations.csv of a clearing.

    Args:
        market: the market (requests, grid, slot times).
        result: its clearing.

    Returns:
        {file name: CSV text}.
    """
    config = market.config
    requests = [{'request': r.request, 'buyer': r.buyer, 'feeder': r.feeder, 'slot': r.slot,
                 'slot_start': config.slot_start_text(r.slot), 'direction': r.direction, 'volume_wh': r.volume_wh,
                 'price_cap': str(r.price_cap), 'level': '' if o.level is None else o.level,
                 'price': _price(config, o.price_units), 'procured_wh': o.procured_wh, 'residual_wh': o.residual_wh,
                 'shortfall_wh': o.shortfall_wh} for r, o in zip(market.requests, result.requests, strict=True)]
    activations = [{'participant': a.participant, 'slot': a.slot, 'slot_start': config.slot_start_text(a.slot),
                    'direction': a.direction, 'offered_wh': a.offered_wh, 'request': a.request,
                    'activated_wh': a.activated_wh, 'price': _price(config, a.price_units),
                    'payment': config.format_amount(a.payment)} for a in result.activations]
    return {'requests.csv': csv_text(REQUEST_COLUMNS, requests),
            'activations.csv': csv_text(ACTIVATION_COLUMNS, activations)}


def settlement_files(config: MarketConfig, settled: FlexSettlement, bills: list[FlexBill]) -> dict[str, str]:
    """deliveries.csv, imbalances.csv and bills.csv of a settlement.

    Args:
        config: the market (amounts, slot times).
        settled: the settlement.
        bills: every participant's bill (flex_bills).

    Returns:
        {file name: CSV text}.
    """
    amount = config.format_amount
    deliveries = [{'participant': d.participant, 'slot': d.slot, 'slot_start': config.slot_start_text(d.slot),
                   'direction': d.direction, 'request': d.request, 'activated_wh': d.activated_wh,
                   'planned_wh': d.planned_wh, 'adjusted_wh': d.adjusted_wh,
                   'net_wh': '' if d.net_wh is None else d.net_wh, 'delivered_wh': d.delivered_wh,
                   'undelivered_wh': d.undelivered_wh, 'payment': amount(d.payment), 'penalty': amount(d.penalty),
                   'flex_net': amount(d.flex_net)} for d in settled.deliveries]
    imbalances = [{'participant': i.participant, 'slot': i.slot, 'slot_start': config.slot_start_text(i.slot),
                   'planned_wh': i.planned_wh, 'adjusted_wh': i.adjusted_wh, 'net_wh': i.net_wh,
                   'deviation_wh': i.deviation_wh, 'amount': amount(i.amount)} for i in settled.imbalances]
    bill_rows = [{'participant': b.participant, 'trade_amount': amount(b.trade_amount),
                  'deviation_amount': amount(b.deviation_amount), 'flex_revenue': amount(b.flex_revenue),
                  'flex_penalty': amount(b.flex_penalty), 'total_amount': amount(b.total_amount)} for b in bills]
    return {'deliveries.csv': csv_text(DELIVERY_COLUMNS, deliveries),
            'imbalances.csv': csv_text(IMBALANCE_COLUMNS, imbalances), 'bills.csv': csv_text(BILL_COLUMNS, bill_rows)}


def report(market: FlexMarket, result: FlexResult) -> None:
    """One line per request: the public outcome."""
    config = market.config
    for o in result.requests:
        price = f'at {_price(config, o.price_units)} {config.currency}/kWh' if o.price_units is not None else ''
        print(f'{o.request}: procured {o.procured_wh} of {o.volume_wh} Wh {price}'.rstrip()
              + (f', shortfall {o.shortfall_wh} Wh' if o.shortfall_wh else ''))
    if result.excluded:
        print(f'excluded (invalid offers): {", ".join(result.excluded)}')


def finish(out: str, market: FlexMarket, result: FlexResult, files: dict[str, str]) -> int:
    """Write the files together, print each request's outcome and the files; 0."""
    paths = write_all(out, files)
    report(market, result)
    print('wrote ' + ', '.join(paths))
    return 0


def cmd_clear(args: argparse.Namespace) -> int:
    """flex clear: clear the requests against the offers and write the results.

    Args:
        args: --requests, --offers, --config, --feeders, --pay-as-bid, --engine, --nodes, --out.

    Returns:
        0.

    Raises:
        InputError: a malformed input file.
        EngineError: the MPC run failed.
    """
    market = load_market(args)
    result = clear_market(market, args)
    return finish(args.out, market, result, result_files(market, result))


def cmd_settle(args: argparse.Namespace) -> int:
    """flex settle: clear, then settle delivery against the meter readings and write both.

    Args:
        args: clear's options, plus --orders (the planned positions) and --readings.

    Returns:
        0 (the energy deviation prices and trade amounts come from the orders' plaintext clearing;
        under --engine mpc the clearing and the delivery settlement run on the nodes).

    Raises:
        InputError: a malformed input file.
        EngineError: the MPC run failed.
    """
    from ..market.book import Book
    from ..market.orders import load_orders
    from ..market.plain import clear_plain
    from ..market.readings import load_readings
    from ..market.settlement import deviation_price2
    market = load_market(args)
    config = market.config
    orders = load_orders(args.orders, config)
    readings = {pair: net for pair, (net, _) in load_readings(args.readings, config).items()}
    energy = clear_plain(Book(config, orders))
    price2 = {s.slot: deviation_price2(config, s) for s in energy.slots}
    if args.engine == 'plain':
        result = clear_flex_plain(market)
        settled = settle_flex_plain(market, result, orders, readings, price2)
    else:
        from ..mpc.flex_local import settle_flex_mpc
        result, settled = settle_flex_mpc(market, orders, readings, price2, nodes=args.nodes)
    trade: dict[str, int] = {}
    for row in energy.rows:
        trade[row.participant] = trade.get(row.participant, 0) + row.amount
    files = {**result_files(market, result), **settlement_files(config, settled, flex_bills(trade, settled))}
    return finish(args.out, market, result, files)


def curve_files(config: MarketConfig, curve: FlexCurve) -> dict[str, str]:
    """curve.csv of the aggregator's view: per (slot, direction) its steps where open (volume_wh
    available at a price up to price), one row with open 'no' and empty figures where withheld.

    Args:
        config: the market (prices, slot times).
        curve: the view.

    Returns:
        {file name: CSV text}.
    """
    rows: list[dict[str, Any]] = []
    for (slot, direction), is_open in curve.opened.items():
        base = {'slot': slot, 'slot_start': config.slot_start_text(slot), 'direction': direction,
                'open': 'yes' if is_open else 'no', 'level': '', 'price': '', 'volume_wh': ''}
        steps = [s for s in curve.steps if (s.slot, s.direction) == (slot, direction)]
        rows += [{**base, 'level': s.level, 'price': config.format_price(s.price_units), 'volume_wh': s.volume_wh}
                 for s in steps] or [base]
    return {'curve.csv': csv_text(CURVE_COLUMNS, rows)}


def cmd_curve(args: argparse.Namespace) -> int:
    """flex curve: the aggregator's view of the offers, opened only where min_cohort offer.

    Args:
        args: --offers, --config, --min-cohort, --engine, --nodes, --out.

    Returns:
        0.

    Raises:
        InputError: a malformed input file.
        EngineError: the MPC run failed.
    """
    config = load_config(args.config)
    offers = load_offers(args.offers, config)
    if args.engine == 'plain':
        curve = flex_curve_plain(config, offers, args.min_cohort)
    else:
        from ..mpc.flex_local import flex_curve_mpc
        curve = flex_curve_mpc(config, offers, args.min_cohort, nodes=args.nodes)
    paths = write_all(args.out, curve_files(config, curve))
    withheld = sum(not v for v in curve.opened.values())
    print(f'{len(curve.opened) - withheld} curves open, {withheld} withheld (fewer than {args.min_cohort} offering)')
    print('wrote ' + ', '.join(paths))
    return 0


def add_parsers(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    """Register ``flex clear`` and ``flex settle``.

    Args:
        sub: the main parser's subparsers.
        formatter: the help formatter.
    """
    from .options import bounded_int
    flex = sub.add_parser('flex', help='the flexibility market: clear requests against private offers, settle '
                                       'delivery', formatter_class=formatter,
                          description='The DSO (per feeder) and the aggregator (the community) request flexibility; '
                                      'households offer it privately; see docs/flexibility.md.')
    commands = flex.add_subparsers(dest='flex_command', required=True, metavar='COMMAND')

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument('--requests', required=True,
                       help='requests CSV: request,buyer,feeder,slot,direction,volume_wh,price_cap[,penalty_price]')
        p.add_argument('--offers', required=True, help='offers CSV: participant,slot,direction,volume_wh,price')
        p.add_argument('--config', required=True, help='market TOML (its price grid and max_order_wh)')
        p.add_argument('--feeders', help='feeders CSV: participant,feeder (default: the market file\'s [zones])')
        p.add_argument('--pay-as-bid', action='store_true',
                       help='pay every activation its own price (default: the market file\'s flex_pricing, '
                            'else the marginal price, pay-as-clear)')
        p.add_argument('--engine', choices=('mpc', 'plain'), default='mpc',
                       help='mpc: node processes on this machine; plain: the plaintext reference')
        p.add_argument('--nodes', type=bounded_int(3, 11), default=3, metavar='M', help='market nodes, 3..11')
        p.add_argument('--out', required=True, help='output directory (files are replaced together at the end)')

    p = commands.add_parser('clear', help='clear the requests in merit order', formatter_class=formatter,
                            description='Writes requests.csv (public: price, procured, shortfall per request) and '
                                        'activations.csv (private: each offer\'s activation and payment).')
    common(p)
    p.set_defaults(func=cmd_clear)
    p = commands.add_parser('settle', help='clear, then settle delivery against the meter readings',
                            formatter_class=formatter,
                            description='Writes clear\'s files, deliveries.csv (delivered, payment, penalty per '
                                        'activation), imbalances.csv (deviations from the adjusted positions) and '
                                        'bills.csv (trade, deviation, flexibility revenue and penalty).')
    common(p)
    p.add_argument('--orders', required=True, help='the energy orders CSV (the planned positions)')
    p.add_argument('--readings', required=True, help='meter readings CSV: participant,slot,net_wh')
    p.set_defaults(func=cmd_settle)
    p = commands.add_parser('curve', help="the aggregator's view: the community's flexibility curve",
                            formatter_class=formatter,
                            description='Writes curve.csv: per slot and direction the volume available at each '
                                        'price level, opened only where at least --min-cohort participants offer.')
    p.add_argument('--offers', required=True, help='offers CSV: participant,slot,direction,volume_wh,price')
    p.add_argument('--config', required=True, help='market TOML (its price grid and max_order_wh)')
    p.add_argument('--min-cohort', type=bounded_int(1, 10 ** 6), required=True, metavar='N',
                   help='open a curve only where at least N participants offer')
    p.add_argument('--engine', choices=('mpc', 'plain'), default='mpc',
                   help='mpc: node processes on this machine; plain: the plaintext reference')
    p.add_argument('--nodes', type=bounded_int(3, 11), default=3, metavar='M', help='market nodes, 3..11')
    p.add_argument('--out', required=True, help='output directory')
    p.set_defaults(func=cmd_curve)
    from .flexrounds import add_submit_parser
    add_submit_parser(commands, formatter)

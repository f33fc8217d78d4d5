"""Suite `flex`: the flexibility clearing of N offers against feeder requests under MPC, beside the
energy clearing of N orders in the same run (issue 25: the first costs at most the second).

Community: ``feeders`` x 20 generated households (``generate --flex``'s model, docs/flexibility.md
"Generated flexibility") over ``slots`` slots; N offers drawn from its offers (seeded). Requests:
per feeder and slot one DSO request in the direction most of the feeder's offers take, for half
their volume, cap 0.100 per kWh (above some offers, below others: shortfalls happen). The energy
run clears the first N orders of a generated community of the same slots. Both on 3 local node
processes, each compared with its plaintext reference.
"""

import random
import time
from decimal import Decimal

from mpc_market.market.book import Book
from mpc_market.market.config import MarketConfig
from mpc_market.market.flex import FlexMarket, FlexOffer, FlexRequest, clear_flex_plain
from mpc_market.market.generate import FEEDER_SIZE, community, feeder_map, first_slot_and_stop, flex_offers
from mpc_market.market.orders import Order
from mpc_market.market.plain import clear_plain
from mpc_market.mpc.flex import FlexBook
from mpc_market.mpc.flex_local import flex_result, run_on_nodes
from mpc_market.mpc.jobs import ORDERS_PER_CHUNK
from mpc_market.mpc.local import clear_mpc

from .suite import figure, headroom, mpc_row, profile_day

NAME, TITLE = 'flex', 'Flexibility clearing under MPC against the energy clearing of as many orders'
CONFIG = MarketConfig(Decimal('0.047'), Decimal('0.139'), Decimal('0.001'), 65535)
CAP = Decimal('0.100')
COLUMNS = [('clearing', 'kind'), ('N', 'n'), ('requests', 'requests'), ('slots', 'slots'),
           ('vectors', 'vectors'), ('seconds', 'seconds'), ('clearing s', 'clearing_s'),
           ('allocation s', 'allocation_s'), ('MB sent / node', 'mb_per_node'),
           ('flex / energy', 'ratio'), ('flex / energy, same vectors', 'ratio_grid'),
           ('procured Wh', 'procured_wh'), ('requested Wh', 'requested_wh'),
           ('shortfall Wh', 'shortfall_wh'), (f'mean price {CONFIG.currency}/kWh', 'mean_price'),
           ('= reference', 'exact')]


def flex_market(params, seed, day=None):
    """The FlexMarket of a run: N offers of the generated households, a request per feeder and slot."""
    households, slots = params['feeders'] * FEEDER_SIZE, params['slots']
    profiles = {}
    community(households, slots, seed, profile_day=day, profiles=profiles)
    feeders = {name: f for name, (f, _) in feeder_map(profiles['names']).items()}
    raw = flex_offers(profiles, seed, day, CONFIG.max_order_wh)
    raw = random.Random(seed).sample(raw, min(params['offers'], len(raw)))
    offers = tuple(FlexOffer(o['participant'], o['slot'], o['direction'], o['volume_wh'], Decimal(o['price']))
                   for o in raw)
    volume = {}
    for o in offers:
        key = (feeders[o.participant], o.slot, o.direction)
        volume[key] = volume.get(key, 0) + o.volume_wh
    requests = []
    first, stop = first_slot_and_stop(slots)
    for feeder in sorted(set(feeders.values())):
        for slot in range(first, stop):
            direction = max(('up', 'down'), key=lambda d: volume.get((feeder, slot, d), 0))
            wanted = max(1, volume.get((feeder, slot, direction), 0) // 2)
            requests.append(FlexRequest(f'dso-{feeder}-{slot}', 'dso', feeder, slot, direction, wanted, CAP, CAP))
    return FlexMarket(CONFIG, tuple(requests), offers, feeders)


def energy_book(n, slots, seed, day=None):
    """A Book of the first n orders of a generated community over the slots."""
    households = max(1, -(-n // max(1, slots // 2)))
    orders = []
    while len(orders) < n:
        raw = community(households, slots, seed, profile_day=day)
        orders = [Order(o['participant'], o['slot'], o['side'], o['energy_wh'], Decimal(o['limit_price']))
                  for o in raw][:n]
        households *= 2
    return Book(CONFIG, orders)


def energy_on_offer_grid(market):
    """A Book of N energy orders where the N offers are (same owners, slots and volumes, so the
    same shared vectors): an up offer a sell order, a down offer a buy, its price held in the band."""
    config = market.config
    orders = [Order(o.participant, o.slot, 'sell' if o.direction == 'up' else 'buy', o.volume_wh,
                    min(max(o.price, config.price_floor), config.price_ceiling)) for o in market.offers]
    return Book(config, orders)


def energy_row(book, nodes, kind):
    """One energy clearing of the book under MPC, compared with its plaintext reference."""
    started = time.perf_counter()
    energy = clear_mpc(book, nodes=nodes)
    row = mpc_row(energy, started, len(book.participants))
    reference = clear_plain(book)
    return {**row, 'kind': kind, 'n': len(book.orders), 'requests': None, 'slots': len(book.slots),
            'vectors': len(book.participants) * len(book.slots), 'mb_per_node': round(row['bytes_per_node'] / 1e6, 1),
            'nodes': nodes, 'ratio': None, 'ratio_grid': None, 'procured_wh': sum(s.traded_wh for s in energy.slots),
            'requested_wh': None, 'shortfall_wh': None, 'mean_price': None,
            'exact': reference.slots == energy.slots and reference.rows == energy.rows}


def run(params, seed):
    """One flexibility clearing and one energy clearing of N each; their ratio."""
    day = profile_day(params)
    market = flex_market(params, seed, day)
    flex_book = FlexBook(market)
    started = time.perf_counter()
    public, values, stats = run_on_nodes(flex_book, flex_book.spec(params['nodes'], ORDERS_PER_CHUNK))
    result = flex_result(flex_book, public, values, stats)
    flex_s = time.perf_counter() - started
    phases = {}  # per phase the slowest node, as mpc_row
    for timings in stats['node_timings']:
        for name, seconds in timings.items():
            phases[name] = max(phases.get(name, 0.0), seconds)
    plain = clear_flex_plain(market)
    requested = sum(r.volume_wh for r in market.requests)
    procured = sum(o.procured_wh for o in result.requests)
    paid = sum(a.payment for a in result.activations)
    mean_price = (Decimal(paid) / CONFIG.price_scale / procured).quantize(Decimal('0.0001')) if procured else None
    dense = energy_row(energy_book(len(market.offers), params['slots'], seed, day), params['nodes'], 'energy')
    grid = energy_row(energy_on_offer_grid(market), params['nodes'], 'energy, same vectors')
    ratio, ratio_grid = round(flex_s / dense['seconds'], 3), round(flex_s / grid['seconds'], 3)
    rows = [{'kind': 'flexibility', 'n': len(market.offers), 'requests': len(market.requests),
             'slots': params['slots'], 'vectors': len(flex_book.participants) * len(flex_book.slots),
             'nodes': params['nodes'], 'seconds': round(flex_s, 3), 'ratio': ratio, 'ratio_grid': ratio_grid,
             **{f'{k}_s': round(v, 3) for k, v in phases.items()},
             'bytes_per_node': public.figures.bytes_sent, 'mb_per_node': round(public.figures.bytes_sent / 1e6, 1),
             'peak_rss_mb_per_node': public.figures.peak_rss_mb,
             'procured_wh': procured, 'requested_wh': requested, 'shortfall_wh': requested - procured,
             'mean_price': None if mean_price is None else str(mean_price), 'excluded': len(result.excluded),
             'exact': result.requests == plain.requests and result.activations == plain.activations},
            dense, grid]
    print(f'flexibility: {len(market.offers)} offers x {len(market.requests)} requests in {flex_s:.2f} s; '
          f'energy: {dense["n"]} orders in {dense["seconds"]:.2f} s ({dense["vectors"]} vectors), '
          f'{grid["seconds"]:.2f} s on the offers\' {grid["vectors"]} vectors; ratio flex/energy {ratio}, '
          f'same vectors {ratio_grid}; '
          f'procured {procured} of {requested} Wh (shortfall {requested - procured}), mean price {mean_price}',
          flush=True)
    return rows, [f'{params["nodes"]} node processes on localhost; seconds = sharing + node processes + '
                  'reconstruction (the book built beforehand); energy: the first N orders of a generated '
                  'community over the same slots (every participant orders in every slot); energy, same vectors: '
                  'N orders where the N offers are (an up offer sells, a down offer buys), so both share as many '
                  'vectors and only the mechanism differs.',
                  'vectors = participants x slots: every offer owner shares one vector per request slot (which '
                  'slots it offers in stays secret), every energy participant one per slot; the phases are the '
                  'slowest node\'s; MB sent: node 0\'s (flexibility), the busiest node\'s (energy).']


def notes(rows):
    """The ratio the issue bounds: flexibility clearing over energy clearing of as many inputs."""
    flex = next(r for r in rows if r['kind'] == 'flexibility')
    verdict = 'at most' if flex['ratio'] <= 1 else 'MORE than'
    grid = 'at most' if flex['ratio_grid'] <= 1 else 'MORE than'
    return [f'The flexibility clearing of {flex["n"]:,} offers took {flex["ratio"]} x the energy clearing of as '
            f'many orders of a community that orders in every slot ({verdict} its cost), and '
            f'{flex["ratio_grid"]} x that of as many orders on the offers\' own vectors ({grid} its cost).']


def figures(rows, directory):
    """Seconds of the two clearings, and the flexibility run's requested, procured and shortfall Wh."""
    path = f'{directory}/flex.png'
    fig = figure(8.0, 4.0)
    left, right = fig.subplots(1, 2)
    seconds = [r['seconds'] for r in rows]
    labels = ['\n'.join([*r['kind'].split(', '), f'N = {r["n"]:,}', f'{r["vectors"]:,} vectors']) for r in rows]
    bottom = [0.0] * len(rows)   # the slowest node's phases, stacked; the rest: sharing, start-up, output
    for phase, color in (('validation', 'tab:gray'), ('clearing', 'tab:orange'), ('allocation', 'tab:green')):
        part = [r.get(f'{phase}_s') or 0.0 for r in rows]
        left.bar(labels, part, bottom=bottom, color=color, label=phase)
        bottom = [b + p for b, p in zip(bottom, part, strict=True)]
    left.bar(labels, [max(0.0, s - b) for s, b in zip(seconds, bottom, strict=True)], bottom=bottom,
             color='tab:blue', label='sharing, start-up, output')
    headroom(left, seconds)
    for i, value in enumerate(seconds):
        left.text(i, value, f'{value:.2f} s', ha='center', va='bottom', fontsize=8)
    left.set_ylabel('seconds (end to end)')
    left.legend(fontsize=7, loc='upper right')
    left.set_title(f'MPC clearing, {rows[0]["nodes"]} nodes: flex / energy = {rows[0]["ratio"]}\n'
                   f'(same vectors: {rows[0]["ratio_grid"]})', fontsize=10)
    left.tick_params(axis='x', labelsize=8)
    flex = rows[0]
    values = [flex['requested_wh'] / 1000, flex['procured_wh'] / 1000, flex['shortfall_wh'] / 1000]
    right.bar(['requested', 'procured', 'shortfall'], values, color=['tab:gray', 'tab:green', 'tab:red'])
    headroom(right, values)
    for i, value in enumerate(values):
        right.text(i, value, f'{value:,.1f}' if value >= 1 or not value else f'{value * 1000:,.0f} Wh',
                   ha='center', va='bottom', fontsize=8)   # a small shortfall would read 0.0
    right.set_ylabel('kWh')
    right.set_title(f'{flex["requests"]:,} DSO requests\nmean price {flex["mean_price"]} {CONFIG.currency}/kWh',
                    fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    return [('clearing time and procured volume', path)]

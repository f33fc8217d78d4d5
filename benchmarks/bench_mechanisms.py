"""Suite `mechanisms`: every market mechanism on the same community, time and economics.

The double auction (merit order), sdr, mmr, bill-sharing and the zoned market clear and settle
one generated community (households with PV, meter readings with forecast errors) under MPC,
each checked against the plaintext reference. Economics per mechanism, from the reference:
community saving against retailer-only bills, self-sufficiency (energy traded inside the
community / energy bought) and the price spread (what buyers pay per kWh − what sellers get).
"""

import dataclasses
import time
from decimal import Decimal

from mpc_market.market import plain
from mpc_market.market.book import Book
from mpc_market.market.config import MarketConfig
from mpc_market.market.generate import community, feeder_map
from mpc_market.market.orders import Order
from mpc_market.mpc import local

from .suite import figure, mpc_row, profile_day

NAME, TITLE = 'mechanisms', 'Mechanisms on one community: time and economics'
CONFIG = MarketConfig(Decimal('0.047'), Decimal('0.139'), Decimal('0.001'), 65535)
COLUMNS = [('mechanism', 'mechanism'), ('participants', 'participants'), ('slots', 'slots'),
           ('seconds (MPC, clear + settle)', 'seconds'), (f'saving vs retailer-only ({CONFIG.currency})', 'saving'),
           ('self-sufficiency', 'self_sufficiency'), (f'price spread ({CONFIG.currency} per kWh)', 'price_spread'),
           ('= reference', 'exact')]
# the terms of the table and the figure, in the report (derived at report time: older results get them too)
DEFINITIONS = [
    f'saving ({CONFIG.currency}): the community\'s bills for the day against the same meter readings billed by the '
    'retailer alone (imports at the ceiling, exports at the floor feed-in tariff), summed over all participants.',
    'self-sufficiency: the share of the energy bought that was supplied inside the community (per slot min(supply, '
    'demand) matched, summed, over all energy bought); the rest came from the retailer.',
    f'price spread ({CONFIG.currency} per kWh): per kWh traded inside the community, what buyers pay minus what '
    'sellers get, weighted by the energy traded: 0 when one clearing price serves both sides (double auction), the '
    'network fee on energy crossing communities (zoned), the scheme\'s buy price minus its sell price (sdr, mmr, '
    'bill-sharing; negative when sellers are credited more per kWh than buyers pay).',
]


def economics(config, result):
    """(community saving, self-sufficiency, price spread per kWh) of a SettlementResult.

    self-sufficiency: energy that changed hands inside the community / energy bought (a scheme's
    whole orders trade, but only min(S, D) of a slot is supplied by the community); price spread:
    per kWh traded, what buyers pay above what sellers get (0 in a double auction; the network fee
    on cross-zone energy in a zoned market; buy - sell price under a scheme)."""
    bought = sum(r.energy_wh for r in result.rows if r.side == 'buy')
    inside = spread_amount = 0
    for slot in result.clearing.slots:
        rows = [r for r in result.rows if r.slot == slot.slot]
        supply = sum(r.matched_wh for r in rows if r.side == 'sell')
        demand = sum(r.matched_wh for r in rows if r.side == 'buy')
        traded = min(supply, demand)
        inside += traded
        if slot.buy_price_units is not None:
            spread_amount += traded * (slot.buy_price_units - slot.sell_price_units)
        elif slot.zones is not None:
            spread_amount += slot.fee_amount
    unit = Decimal(10) ** -(config.decimals + 3)  # money per Wh x price unit
    spread = Decimal(spread_amount) * unit * 1000 / inside if inside else Decimal(0)
    saving = config.format_amount(sum(b.saving for b in result.bills))
    return saving, round(inside / bought, 4) if bought else 0.0, f'{spread:.4f}'


def books(participants, slots, seed, zones, day=None):
    raw, raw_readings = community(participants, slots, seed, with_readings=True, profile_day=day)
    orders = [Order(o['participant'], o['slot'], o['side'], o['energy_wh'], Decimal(o['limit_price'])) for o in raw]
    net_of = {(r['participant'], r['slot']): r['net_wh'] for r in raw_readings}
    names = sorted({o.participant for o in orders} | {p for p, _ in net_of})
    zoned = dataclasses.replace(CONFIG, zoned=True, network_fee=Decimal('0.010'),
                                zone_map=tuple((p, z) for p, (_, z) in feeder_map(names, zones).items()))
    for mechanism in ('double-auction', 'sdr', 'mmr', 'bill-sharing', 'zoned'):
        config = zoned if mechanism == 'zoned' else dataclasses.replace(CONFIG, mechanism=mechanism)
        yield mechanism, Book(config, orders, extra_pairs=list(net_of)), net_of


def run(params, seed):
    rows = []
    for mechanism, book, net_of in books(params['participants'], params['slots'], seed, params['zones'],
                                         profile_day(params)):
        started = time.perf_counter()
        secure = local.settle_mpc(book, net_of, nodes=params['nodes'], timeout=1800)
        row = {'mechanism': mechanism, 'participants': len(book.participants), 'slots': len(book.slots),
               'nodes': params['nodes'], **mpc_row(secure, started, len(book.participants))}
        reference = plain.settle_plain(book, net_of)
        row['exact'] = (secure.rows == reference.rows and secure.bills == reference.bills
                        and secure.slots == reference.slots)
        row['saving'], row['self_sufficiency'], row['price_spread'] = economics(book.config, reference)
        rows.append(row)
        print(f'  {mechanism:<14} {row["seconds"]:6.2f} s  saving {row["saving"]}  self-sufficiency '
              f'{row["self_sufficiency"]:.1%}  spread {row["price_spread"]}/kWh  exact {row["exact"]}', flush=True)
    notes = ['saving, self-sufficiency and price spread: from the plaintext reference (equal to MPC where exact).',
             f'zoned: {params["zones"]} communities of whole feeders, network fee 0.010 per kWh.']
    return rows, notes


def notes(rows):
    """The definitions of saving, self-sufficiency and price spread."""
    return list(DEFINITIONS)


def figures(rows, directory):
    fig = figure(8, 5.6)
    names = [r['mechanism'] for r in rows]
    panels = (('time (s): clear + settle under MPC', [r['seconds'] for r in rows], '{:.0f} s', '#4c72b0'),
              (f'community saving vs retailer-only ({CONFIG.currency})', [float(r['saving']) for r in rows],
               '{:.1f}', '#55a868'),
              ('self-sufficiency (% of the energy bought)', [100 * r['self_sufficiency'] for r in rows],
               '{:.1f} %', '#8172b2'),
              (f'price spread ({CONFIG.currency}/kWh): buy - sell price', [float(r['price_spread']) for r in rows],
               '{:+.4f}', '#c44e52'))
    for axis, (title, values, label, colour) in zip(fig.subplots(2, 2).flat, panels, strict=True):
        # horizontal bars: the mechanism names read left to right and never overlap
        axis.barh(names, values, color=colour)
        axis.invert_yaxis()
        axis.set_title(title, fontsize=9)
        axis.axvline(0, color='black', linewidth=0.6)
        span = max(max(values), 0) - min(min(values), 0) or 1
        axis.set_xlim(min(min(values), 0) - 0.35 * span * (min(values) < 0), max(max(values), 0) + 0.35 * span)
        for y, v in enumerate(values):
            axis.text(v, y, f' {label.format(v)} ', va='center', ha='left' if v >= 0 else 'right', fontsize=8)
        axis.tick_params(labelsize=8)
    fig.suptitle(f'{rows[0]["participants"]} participants x {rows[0]["slots"]} slots, {rows[0]["nodes"]} nodes, '
                 'each equal to the plaintext reference', fontsize=10)
    fig.tight_layout()
    path = f'{directory}/mechanisms.png'
    fig.savefig(path)
    return [(f'time, saving ({CONFIG.currency}), self-sufficiency and price spread per mechanism', path)]

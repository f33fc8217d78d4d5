"""Suite `rules`: merit order vs the old pro-rata rule, and the zoned market vs one market.

The same generated community (floor 0.047, ceiling 0.139, tick 0.001: 93 levels) is cleared
under MPC by 3 local node processes three ways, interleaved and repeated in one run:
  merit      the product's rule (one market, merit order);
  pro-rata   the rule merit order replaced (the registered allocation 'pro-rata' of
             mpc_market.mpc.prorata, which a market file cannot select; the crossing is the same);
  zoned      the same orders in N communities of whole feeders, network fee 0.010/kWh.
Per size: the median node and end-to-end times per rule, the ratios pro-rata/merit and
zoned/merit, and whether each agreed with its plaintext reference.
"""

import os
import statistics
from dataclasses import replace
from decimal import Decimal

from mpc_market.market.book import Book
from mpc_market.market.generate import community, feeder_map
from mpc_market.market.orders import Order
from mpc_market.market.plain import clear_plain
from mpc_market.market.rule import prorata_clear_slot
from mpc_market.mpc.local import clear_mpc

from .bench_clearing import CONFIG
from .suite import figure, profile_day

NAME, TITLE = 'rules', 'Market rules: merit order vs pro-rata, zoned vs one market'
RULES = ('merit', 'pro-rata', 'zoned')
COLUMNS = [('participants', 'participants'), ('slots', 'slots'), ('zones', 'zones'), ('runs per rule', 'repeat'),
           ('merit order, nodes s', 'merit_nodes_s'), ('pro-rata, nodes s', 'pro-rata_nodes_s'),
           ('zoned, nodes s', 'zoned_nodes_s'), ('merit order, end to end s', 'seconds'),
           ('pro-rata / merit (nodes)', 'prorata_over_merit_nodes'),
           ('zoned / merit (nodes)', 'zoned_over_merit_nodes'),
           ('zoned / merit (end to end)', 'zoned_over_merit_total'),
           ('= references', 'exact')]


def complete(row):
    """The suite frame's common fields of a row (also for rows converted from the old script's files).

    Args:
        row: a row with the script's fields (merit_total_s, RULE_agrees).

    Returns:
        The row with seconds (merit order, median end to end), exact (every rule equal to its
        reference), bytes_per_node and peak_rss_mb_per_node of the merit-order run (None where
        the old files did not record them).
    """
    return dict(row, seconds=row['merit_total_s'], exact=all(row[f'{r}_agrees'] for r in RULES),
                bytes_per_node=row.get('bytes_per_node'), peak_rss_mb_per_node=row.get('peak_rss_mb_per_node'))


def books(participants, slots, zones, seed, day=None):
    """(one market, the zoned market) of the same generated orders."""
    raw = community(participants, slots, seed, profile_day=day)
    feeders = feeder_map(sorted({o['participant'] for o in raw}), zones)
    orders = [Order(o['participant'], o['slot'], o['side'], o['energy_wh'], Decimal(o['limit_price']),
                    zone=feeders[o['participant']][1]) for o in raw]
    zoned = replace(CONFIG, zoned=True, network_fee=Decimal('0.010'))
    return Book(CONFIG, orders), Book(zoned, orders)


def agrees_prorata(book, result):
    """The MPC output of the pro-rata allocation against the old rule's plaintext reference."""
    k = book.config.levels
    by_slot = {s: [] for s in book.slots}
    for o in book.orders:
        position = book.positions[(o.participant, o.slot)][0]
        if position is not None:
            by_slot[o.slot].append((o, ('sell', position) if position < k else ('buy', position - k)))
    rows = {(r.participant, r.slot): r for r in result.rows}
    for slot_row in result.slots:
        entries = by_slot[slot_row.slot]
        level, volume, residual, matched = prorata_clear_slot([(s, lv, o.energy_wh) for o, (s, lv) in entries], k)
        if (slot_row.level, slot_row.traded_wh, slot_row.residual_wh) != (level, volume, residual):
            return False
        if any(rows[(o.participant, o.slot)].matched_wh != m for (o, _), m in zip(entries, matched, strict=True)):
            return False
    return True


def run_rule(rule, unzoned, zoned, nodes):
    """(stats, agrees with its reference) of one MPC clearing under the rule."""
    book = zoned if rule == 'zoned' else unzoned
    result = clear_mpc(book, nodes=nodes, allocation='pro-rata' if rule == 'pro-rata' else 'merit-order')
    if rule == 'pro-rata':
        agrees = agrees_prorata(book, result)
    else:
        plain = clear_plain(book)
        agrees = plain.slots == result.slots and plain.rows == result.rows
    return result.stats, agrees


def one(participants, slots, zones, repeat, nodes, seed, day=None):
    """The row of one size: every rule repeat times, interleaved; medians and ratios."""
    unzoned, zoned = books(participants, slots, zones, seed, day)
    times = {r: {'nodes_s': [], 'total_s': []} for r in RULES}
    agree = {r: True for r in RULES}
    costs = []
    for _ in range(repeat):
        for rule in RULES:
            stats, ok = run_rule(rule, unzoned, zoned, nodes)
            times[rule]['nodes_s'].append(stats['nodes_s'])
            times[rule]['total_s'].append(stats['total_s'])
            agree[rule] &= ok
            if rule == 'merit':
                costs.append((stats['bytes_sent_per_participant'] * len(unzoned.participants), stats['peak_rss_mb']))
    median = {r: {k: statistics.median(v) for k, v in times[r].items()} for r in RULES}
    row = {'participants': participants, 'slots': slots, 'zones': zones, 'repeat': repeat,
           **{f'{r}_{k}': round(median[r][k], 3) for r in RULES for k in ('nodes_s', 'total_s')},
           'prorata_over_merit_nodes': round(median['pro-rata']['nodes_s'] / median['merit']['nodes_s'], 3),
           'zoned_over_merit_nodes': round(median['zoned']['nodes_s'] / median['merit']['nodes_s'], 3),
           'zoned_over_merit_total': round(median['zoned']['total_s'] / median['merit']['total_s'], 3),
           **{f'{r}_agrees': agree[r] for r in RULES},
           'bytes_per_node': round(max(b for b, _ in costs)), 'peak_rss_mb_per_node': max(p for _, p in costs)}
    return complete(row)


def run(params, seed):
    """Every size of the preset (``sizes``: "NxS", participants x slots)."""
    rows = []
    for size in params['sizes']:
        participants, slots = map(int, size.lower().split('x'))
        row = one(participants, slots, params['zones'], params['repeat'], params['nodes'], seed, profile_day(params))
        rows.append(row)
        print(f'{participants:>6} x {slots:<3} median node time of {params["repeat"]}: merit '
              f'{row["merit_nodes_s"]:.2f} s, pro-rata {row["pro-rata_nodes_s"]:.2f} s, zoned ({params["zones"]} '
              f'zones) {row["zoned_nodes_s"]:.2f} s | merit/pro-rata {1 / row["prorata_over_merit_nodes"]:.2f}x, '
              f'zoned/merit {row["zoned_over_merit_nodes"]:.2f}x (end to end {row["zoned_over_merit_total"]:.2f}x) | '
              f'references agree: {row["exact"]}', flush=True)
    return rows, describe(params)


def describe(params):
    """The report's notes of a run with these parameters."""
    return [f'{params["nodes"]} node processes on localhost; the three rules interleaved, {params["repeat"]} runs '
            'each, medians; nodes s: the node processes (MPC session), end to end: sharing + nodes + reconstruction.',
            f'zoned: {params["zones"]} communities of whole feeders, network fee 0.010 per kWh; pro-rata: the same '
            'crossing, every eligible order of a side gets floor(E * V / T).',
            'bytes and peak memory per node: of the merit-order runs.']


def figures(rows, directory):
    fig = figure()
    axis = fig.subplots()
    width = 0.8 / len(RULES)
    for k, rule in enumerate(RULES):
        axis.bar([i + (k - 1) * width for i in range(len(rows))], [r[f'{rule}_nodes_s'] for r in rows], width,
                 label={'merit': 'merit order (one market)', 'pro-rata': 'pro-rata (one market)',
                        'zoned': 'merit order, zoned'}[rule])
    for i, r in enumerate(rows):
        axis.annotate(f'×{r["zoned_over_merit_nodes"]:.2f}', (i + width, r['zoned_nodes_s']), ha='center',
                      va='bottom', fontsize=8)
        axis.annotate(f'×{r["prorata_over_merit_nodes"]:.2f}', (i, r['pro-rata_nodes_s']), ha='center',
                      va='bottom', fontsize=8)
    axis.set_xticks(range(len(rows)),
                    [f'{r["participants"]:,} × {r["slots"]}\n(zoned: {r["zones"]} zones)' for r in rows])
    axis.set_xlabel('participants × slots')
    axis.set_ylabel(f'median node time of {rows[0]["repeat"]} runs (s)')
    axis.set_title('Time under MPC per rule (×: against the merit order)', fontsize=10)
    axis.legend(fontsize=8)
    axis.grid(True, axis='y', alpha=0.3)
    fig.tight_layout()
    path = os.path.join(directory, 'rules.png')
    fig.savefig(path)
    return [('node time per rule and size', path)]

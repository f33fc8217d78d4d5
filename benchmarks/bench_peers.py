"""Suite `peers`: cost against the number of MPC parties, and scenario S1 against peer count.

Client-sharing: the same orders cleared by m = 3..11 market nodes (threshold (m-1)/2). S1
(direct peers): every peer runs a node up to 7 peers; beyond, the peers draw a committee by the
commit-then-reveal lottery (mpc/committee.py) and the others submit to it as clients. Per run:
time, bytes sent per party, MPyC messages per link (an upper bound on sequential rounds: each
exchange between two nodes is one message per link), peak memory, and equality with the
plaintext reference. The capture table gives the chance that a coalition of peers wins a
majority of an S1 committee.
"""

import os
import time

from mpc_market.market import plain
from mpc_market.mpc import committee, local

from .bench_scaling import book_of
from .suite import figure, mpc_row, profile_day

NAME, TITLE = 'peers', 'MPC parties and scenario S1 (direct peers) at scale'
COLUMNS = [('series', 'series'), ('nodes', 'nodes'), ('participants', 'participants'), ('orders', 'orders'),
           ('seconds', 'seconds'), ('MPC session s', 'node_total_s'), ('KiB sent per party', 'kib_per_node'),
           ('messages per link', 'messages_per_link'), ('peak MB per node', 'peak_rss_mb_per_node'),
           ('= reference', 'exact')]


def _row(series, book, result, started):
    row = {'series': series, 'nodes': result.stats['nodes'], 'participants': len(book.participants),
           'orders': len(book.orders), **mpc_row(result, started, len(book.participants)),
           'messages_per_link': result.stats['messages_per_link']}
    reference = plain.clear_plain(book)
    row['exact'] = result.rows == reference.rows and result.slots == reference.slots
    row['kib_per_node'] = round(row['bytes_per_node'] / 1024, 1)
    print(f'  {series:<15} {row["nodes"]:>2} nodes {row["participants"]:>6} participants '
          f'{row["seconds"]:8.2f} s  exact {row["exact"]}', flush=True)
    return row


def run(params, seed):
    rows = []
    day = profile_day(params)
    book, _ = book_of(params['participants'], 1, seed, False, day)
    for nodes in params['nodes']:
        started = time.perf_counter()
        rows.append(_row('client-sharing', book, local.clear_mpc(book, nodes=nodes, timeout=3600), started))
    for peers in params['peers']:
        book, _ = book_of(peers, params['peer_slots'], seed, False, day)
        size = peers if peers <= committee.ALL_PEERS_UP_TO else params['committee']
        started = time.perf_counter()
        result = local.clear_peers(book, size, round_id=f'bench-{peers}', timeout=3600)
        lottery = result.stats['committee']
        committee.verify(lottery, committee.transcript_registry(lottery))  # the run played every peer, own keys
        row = _row('S1 peers', book, result, started)
        row['committee'] = ' '.join(result.stats['committee']['committee'])
        rows.append(row)
    notes = [f'client-sharing: {params["participants"]} participants x 1 slot; S1: {params["peer_slots"]} slots '
             f'per peer, a committee of {params["committee"]} above {committee.ALL_PEERS_UP_TO} peers.',
             'messages per link: MPyC messages one node sent to one other, the most of any link; each sequential '
             'exchange is one message, so this bounds the number of rounds from above.',
             'KiB sent per party: bytes a node sent to all other nodes, the most of any node.']
    notes += capture_notes(params)
    return rows, notes


def notes(rows):
    """Which runs drew their randomness by PRSS (derived at report time)."""
    from mpc_market.mpc.node import PRSS_UP_TO
    sizes = sorted({r['nodes'] for r in rows})
    prss, plain = [m for m in sizes if m <= PRSS_UP_TO], [m for m in sizes if m > PRSS_UP_TO]
    return [f'random shares: by PRSS (no communication, C(m, t) PRF calls each) with {prss} nodes; with {plain} '
            'nodes by MPyC without PRSS (more bytes and messages, far less CPU: mpc/node.py PRSS_UP_TO)'] if plain \
        else []


def capture_notes(params):
    """P(a coalition holds more than the threshold of the committee's seats), per peer count: as
    drawn, and when its members withhold their nonces to force re-draws (at most MAX_ATTEMPTS - 1)."""
    size = params['committee']
    lines = []
    for peers in (p for p in params['peers'] if p > committee.ALL_PEERS_UP_TO):
        corrupt = [(share, round(share * peers)) for share in params['corrupt_shares']]
        odds = ', '.join(f'{share:.0%} of peers: {committee.capture_probability(peers, c, size):.3f}, '
                         f'{committee.capture_probability(peers, c, size, withholders=c):.3f} withholding'
                         for share, c in corrupt)
        lines.append(f'S1 with {peers} peers, committee of {size}: chance that a coalition wins a majority of '
                     f'the seats, as drawn and when it withholds nonces to force up to '
                     f'{committee.MAX_ATTEMPTS - 1} re-draws ({odds}).')
    return lines


def figures(rows, directory):
    paths = []
    for series, key, label in (('client-sharing', 'nodes', 'market nodes m'),
                               ('S1 peers', 'participants', 'peers')):
        chosen = [r for r in rows if r['series'] == series]
        if not chosen:
            continue
        fig = figure()
        axes = fig.subplots(1, 3)
        xs = [r[key] for r in chosen]
        for axis, (field, ylabel) in zip(axes, (('seconds', 'time (s)'), ('kib_per_node', 'KiB sent per party'),
                                               ('messages_per_link', 'messages per link')), strict=True):
            axis.plot(xs, [r[field] for r in chosen], 'o-')
            axis.set_xlabel(label)
            axis.set_ylabel(ylabel)
            axis.grid(True, which='both', alpha=0.3)
            if key == 'participants':
                axis.set_xscale('log')
            if field == 'seconds':
                axis.set_yscale('log')
            else:
                axis.set_ylim(bottom=0)
        fig.suptitle(f'{series}: {chosen[0]["orders"]} orders' if key == 'nodes' else
                     'S1: every peer a node up to 7, else a committee drawn by lottery')
        fig.tight_layout()
        path = os.path.join(directory, f'peers-{key}.png')
        fig.savefig(path)
        paths.append((f'{series} against {label}', path))
    return paths

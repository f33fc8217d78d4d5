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
from .suite import figure, headroom, mpc_row, plain_log_ticks, profile_day

NAME, TITLE = 'peers', 'MPC parties and scenario S1 (direct peers) at scale'
COLUMNS = [('series', 'series'), ('nodes', 'nodes'), ('participants', 'participants'), ('orders', 'orders'),
           ('seconds', 'seconds'), ('MPC session s', 'node_total_s'), ('MiB sent per party', 'mib_per_node'),
           ('messages per link', 'messages_per_link'), ('peak MB per node', 'peak_rss_mb_per_node'),
           ('= reference', 'exact')]


def _row(series, book, result, started):
    row = {'series': series, 'nodes': result.stats['nodes'], 'participants': len(book.participants),
           'orders': len(book.orders), **mpc_row(result, started, len(book.participants)),
           'messages_per_link': result.stats['messages_per_link']}
    reference = plain.clear_plain(book)
    row['exact'] = result.rows == reference.rows and result.slots == reference.slots
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
             'MiB sent per party: bytes a node sent to all other nodes, the most of any node (1 MiB = 2^20 bytes).']
    notes += capture_notes(params)
    return rows, notes


def mib(row):
    """MiB a party sent (derived from bytes_per_node, so older results show in MiB too)."""
    return round(row['bytes_per_node'] / 2 ** 20, 1)


def tables(rows):
    """The one report table, with the bytes sent per party in MiB."""
    return [(None, COLUMNS, [dict(r, mib_per_node=mib(r)) for r in rows])]


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
        fig = figure(9, 3.6)
        axes = fig.subplots(1, 3)
        xs = [r[key] for r in chosen]
        for axis, (ylabel, ys) in zip(axes, (('time (s)', [r['seconds'] for r in chosen]),
                                             ('MiB sent per party', [mib(r) for r in chosen]),
                                             ('messages per link', [r['messages_per_link'] for r in chosen])),
                                      strict=True):
            axis.plot(xs, ys, 'o-')
            axis.set_xlabel(label)
            axis.set_ylabel(ylabel)
            axis.grid(True, which='major', alpha=0.3)
            if key == 'participants':  # 5 to 500 peers: log, labelled at the counts run
                axis.set_xscale('log')
                plain_log_ticks(axis, 'x', xs)
            else:
                axis.set_xticks(xs)
            if ylabel == 'time (s)':
                axis.set_yscale('log')
                plain_log_ticks(axis, 'y')
                axis.set_ylim(min(ys) / 1.3, max(ys) * 1.3)
            else:
                headroom(axis, ys)
        fig.suptitle(f'client-sharing: the same {chosen[0]["orders"]} orders cleared by m nodes '
                     f'(threshold (m-1)/2)' if key == 'nodes' else
                     f'S1: every peer a node up to {committee.ALL_PEERS_UP_TO} peers, above that a committee of '
                     f'{chosen[-1]["nodes"]} drawn by lottery')
        fig.tight_layout()
        path = os.path.join(directory, f'peers-{key}.png')
        fig.savefig(path)
        paths.append((f'{series} against {label}', path))
    return paths

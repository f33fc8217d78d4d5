"""The leakage scan: search everything an actor stored and received for what it must not hold.

An actor is an organisation: the files of every process it runs (state directory, log, the gRPC
requests it received, recorded by benchmarks/instrument) and of every participant it is or
represents (order files, results, command output). The scan looks, byte for byte, for

- identity: a participant's name;
- order: one of its orders as ``participant,slot,side,energy_wh`` (how orders and per-participant
  results are written), so an order value tied to its owner;
- offer: one of its flexibility offers as ``participant,slot,direction,volume_wh`` (how offers are
  written), a flexibility round's secret input;
- activation: one of its rows of ``activations.csv`` (participant, slot, direction, offered Wh,
  request, activated Wh, price, payment), a flexibility round's secret output;
- share: the first 32 bytes of the share package node j holds of a participant, and of node j's
  result shares of it (random field elements: found elsewhere only if copied);

and reports, per actor, each secret found where the scenario does not allow it. The ground truth
comes from the orders and from every node's store after the run. What it cannot see: a value in
an encoding it does not know (an energy logged without its owner's name, a share transformed
before it is written); a clean scan is evidence against the leaks it looks for, not a proof.
"""

import os
import sqlite3
from dataclasses import dataclass, field

FINGERPRINT = 32  # bytes of a share package or result share that identify it


@dataclass
class Actor:
    """An organisation in a scenario: its files, and what it may hold."""
    name: str
    roles: list
    paths: list = field(default_factory=list)
    participants: set = field(default_factory=set)   # itself (a peer) or its clients (a representative)
    nodes: set = field(default_factory=set)          # node indices it runs
    coordinator: bool = False

    def data(self):
        """Every byte of every file under its paths (files and directories)."""
        chunks = []
        for path in self.paths:
            if os.path.isfile(path):
                chunks.append(_read(path))
            for root, _, files in os.walk(path):
                chunks += [_read(os.path.join(root, f)) for f in sorted(files)]
        return b'\n'.join(chunks)


def _read(path):
    with open(path, 'rb') as f:
        return f.read()


@dataclass
class Secrets:
    identities: dict   # participant -> name bytes
    orders: dict       # participant -> [order row bytes]
    shares: dict       # (participant, node) -> [fingerprints] (order or offer package, result shares)
    offers: dict = field(default_factory=dict)       # participant -> [offer row bytes]
    activations: dict = field(default_factory=dict)  # participant -> [activations.csv row bytes]
    public_names: set = field(default_factory=set)   # names a public input lists (a feeder map): no leak


def _rows_of(rows, width):
    """participant -> the first width fields of each of its rows, comma-joined, as bytes."""
    out = {}
    for row in rows:
        out.setdefault(row[0], []).append(','.join(map(str, row[:width])).encode())
    return out


def secrets_of(orders, node_dirs, offers=(), activations=(), public_names=()):
    """Ground truth: orders (participant, slot, side, energy_wh, ...), flexibility offers
    (participant, slot, direction, volume_wh, ...), the reference's activations.csv rows (as
    field tuples, participant first), the names a public input lists (a flexibility round's feeder
    map: a participant's feeder is public) and every node's store (every round's packages and results)."""
    identities = {row[0]: row[0].encode() for rows in (orders, offers) for row in rows}
    rows = _rows_of(orders, 4)
    shares = {}
    for node, directory in enumerate(node_dirs):
        db = sqlite3.connect(f'file:{os.path.join(directory, "node.db")}?mode=ro', uri=True)
        try:
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            held = list(db.execute('SELECT participant, package FROM submissions'))
            for table in ('results', 'settlement_results', 'delivery_results'):  # every kind of result share
                if table in tables:
                    held += list(db.execute(f'SELECT participant, shares FROM {table}'))  # noqa: S608 - fixed names
        finally:
            db.close()
        for p, blob in held:
            shares.setdefault((p, node), []).append(bytes(blob[:FINGERPRINT]))
    return Secrets(identities, rows, shares, _rows_of(offers, 4),
                   {p: [b','.join(f.encode() for f in row) for row in activations if row[0] == p]
                    for p in {row[0] for row in activations}}, set(public_names))


def scan(actors, secrets):
    """One row per actor: what it holds of each kind, and every secret it must not hold."""
    rows = []
    for actor in actors:
        data = actor.data()
        may_know_names = set(secrets.identities) if actor.nodes else actor.participants | secrets.public_names
        found = {
            'identity': sorted(p for p, name in secrets.identities.items() if name in data),
            'order': sorted({p for p, lines in secrets.orders.items() for line in lines if line in data}),
            'share': sorted({(p, n) for (p, n), prints in secrets.shares.items() for fp in prints if fp in data}),
        }
        for kind, of in (('offer', secrets.offers), ('activation', secrets.activations)):
            found[kind] = sorted({p for p, lines in of.items() for line in lines if line in data})
        leaks = ([f'identity {p}' for p in found['identity'] if p not in may_know_names]
                 + [f'{kind} of {p}' for kind in ('order', 'offer', 'activation') for p in found[kind]
                    if p not in actor.participants]
                 + [f'share {p}@node{n}' for p, n in found['share'] if n not in actor.nodes])
        rows.append({'actor': actor.name, 'roles': ', '.join(actor.roles), 'bytes_scanned': len(data),
                     'identities_held': len(found['identity']), 'order_owners_held': len(found['order']),
                     'share_packages_held': len(found['share']), 'offer_owners_held': len(found['offer']),
                     'activation_owners_held': len(found['activation']), 'leaks': leaks})
    return rows

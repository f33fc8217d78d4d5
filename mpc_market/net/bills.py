"""A participant's bill from a deployment: its own clearing and settlement shares, reconstructed.

Per settled round the participant fetches its clearing rows (trade amounts) and its settlement
rows (deviation Wh and amount), both sealed to its key, and derives the net reading the nodes
settled (deviation + planned position), so the retailer-only comparison follows the same data,
the missing-reading rule included. Summed over the rounds of a period this equals the
participant's row of ``bills.csv`` of the local ``mpc-market settle`` on the same data.
"""

from ..market.book import Book
from ..market.orders import load_orders
from ..market.results import Bill, order_rows
from ..market.settlement import complete_readings, planned_position, retailer_only_amount
from ..rpc import market_pb2
from .client import ClientError, client_manifest, fetch_own_results
from .trusted import trusted_round


def _fetch(broker, keys_dir, participant, state, client, kind):
    """(status, values) of one kind, or ('none', None) if the participant took no part."""
    try:
        _, status, values = fetch_own_results(broker, keys_dir, participant, client=client, kind=kind, state=state)
    except ClientError as exc:
        if exc.code != 'NOT_FOUND':
            raise
        return 'none', None
    return status, values


def round_bill(broker, keys_dir, participant, state, orders, readings, client='submitter'):
    """(trade, deviation, retailer-only, settlement status) of one settled round (a TrustedRound), in money units."""
    config = state.config
    slots = list(state.slots)
    in_round = set(slots)
    own = [o for o in orders if o.participant == participant and o.slot in in_round]
    book = Book(config, own, extra_pairs=[(participant, s) for s in slots])
    status, values = _fetch(broker, keys_dir, participant, state, client, '')
    trade = 0
    if values is not None:  # its orders counted (cleared, or excluded: then with the retailer)
        index = {s: j for j, s in enumerate(slots)}
        rows = order_rows(book, set() if status == 'cleared' else {participant},
                          lambda o: tuple(int(v) for v in values[index[o.slot]]))
        trade = sum(r.amount for r in rows)
    settle_status, settled = _fetch(broker, keys_dir, participant, state, client, 'settlement')
    if settled is None:
        return trade, 0, 0, settle_status
    deviation = sum(int(v[1]) for v in settled)
    if settle_status == 'excluded':  # no deviation settled: the retailer-only bill of its own readings
        net_of, _ = complete_readings(book, {(p, s): n for (p, s), n in readings.items() if p == participant})
        nets = [net_of.get((participant, s), 0) for s in slots]
    else:
        counted = values is not None and status != 'missing'
        nets = [int(v[0]) + (planned_position(book.order_of.get((participant, s))) if counted else 0)
                for s, v in zip(slots, settled)]
    return trade, deviation, sum(retailer_only_amount(config, n) for n in nets), settle_status


def period_bill(broker, keys_dir, participant, first_day, last_day, orders_path, readings=None, client='submitter',
                round_id=''):
    """(Bill summed over the settled rounds delivering from first_day to last_day (or of round_id
    alone), rounds used, rounds of the period not settled yet)."""
    rounds = [broker.status(round_id)] if round_id else [
        r for r in broker.rounds() if r.day and first_day <= r.day <= last_day]
    manifest = client_manifest(keys_dir)
    settled = [trusted_round(r, manifest, r.round_id) for r in rounds if r.settlement == market_pb2.RoundState.SETTLED]
    pending = [r for r in rounds if r.settlement != market_pb2.RoundState.SETTLED]
    trade = deviation = retailer_only = 0
    for state in settled:
        orders = load_orders(orders_path, state.config) if orders_path else []
        t, d, r, _ = round_bill(broker, keys_dir, participant, state, orders, readings or {}, client)
        trade, deviation, retailer_only = trade + t, deviation + d, retailer_only + r
    total = trade + deviation
    return Bill(participant, trade, deviation, total, retailer_only, retailer_only - total), settled, pending

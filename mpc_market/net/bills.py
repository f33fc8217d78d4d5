"""A participant's bill from a deployment: its own clearing and settlement shares, reconstructed.

Per settled round the participant fetches its clearing rows (trade amounts) and its settlement
rows (deviation Wh and amount), both sealed to its key, and derives the net reading the nodes
settled (deviation + planned position), so the retailer-only comparison follows the same data,
the missing-reading rule included. Summed over the rounds of a period this equals the
participant's row of ``bills.csv`` of the local ``mpc-market settle`` on the same data.

The participant's orders are needed: an order that cannot trade locally (limit outside the band)
or of an excluded participant is settled with the retailer at a price the shares do not carry,
and the planned positions (hence the net readings of the retailer-only comparison) are the
orders' energies, which the shares do not tell apart from a buy or a sell reliably.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..market.book import Book
from ..market.orders import Order, load_orders
from ..market.results import Bill, order_rows
from ..market.settlement import complete_readings, planned_position, retailer_only_amount
from ..rpc import market_pb2
from .client import BrokerClient, ClientError, client_manifest, fetch_own_results, fetch_public
from .trusted import TrustedRound, trusted_round

Readings = Mapping[tuple[str, int], int]  # {(participant, slot): net Wh}


def _fetch(broker: BrokerClient, keys_dir: str, participant: str, state: TrustedRound, client: str,
           kind: str) -> tuple[str, np.ndarray | None]:
    """(status, values) of one kind, or ('none', None) if the participant took no part."""
    try:
        _, status, values = fetch_own_results(broker, keys_dir, participant, client=client, kind=kind, state=state)
    except ClientError as exc:
        if exc.code != 'NOT_FOUND':
            raise
        return 'none', None
    return status, values


def settled_flex_round(broker: BrokerClient, keys_dir: str, round_id: str) -> str:
    """The flexibility round a settled round delivered, as every node signed it in the public
    settlement ('' none): then its participants' 'delivery' shares exist.

    Args:
        broker: a BrokerClient.
        keys_dir: the client's keys (the manifest).
        round_id: a settled round.

    Returns:
        The flexibility round's id, or ''.

    Raises:
        ClientError: the broker refused, or the public settlement is not signed by every node.
    """
    _, body = fetch_public(broker, keys_dir, round_id, settlement=True)
    flex_round = body.get('flex_round', '')
    if not isinstance(flex_round, str):
        raise ClientError(f'round {round_id}: the public settlement names no valid flexibility round')
    return flex_round


@dataclass
class RoundBill:
    """One participant's bill of one settled round, in money units (10**-(decimals+3) currency);
    trade + deviation - flex_revenue + flex_penalty is what it pays."""
    trade: int
    deviation: int
    retailer_only: int
    status: str          # the clearing status ('cleared', 'excluded', 'missing'), 'none' if it took no part
    settle_status: str   # the settlement status ('metered', 'missing-reading', ...), 'none' if it took no part
    flex_revenue: int = 0   # payments for delivered flexibility (a round settled with a flexibility round)
    flex_penalty: int = 0   # penalties for undelivered flexibility

    @property
    def took_part(self) -> bool:
        """Whether the participant had clearing or settlement results in the round."""
        return self.status != 'none' or self.settle_status != 'none'


def bill_of_round(broker: BrokerClient, keys_dir: str, participant: str, state: TrustedRound, orders: Sequence[Order],
                  readings: Readings, client: str = 'submitter', flex_round: str | None = None) -> RoundBill:
    """The participant's bill of one settled round from its own result shares (with flex_round,
    also its delivered flexibility's: payment, penalty, and the adjusted position its deviation
    is measured against).

    Args:
        broker: a BrokerClient (with state given, the shares come from state's nodes).
        keys_dir: the key directory holding the participant's keys and the manifest.
        participant: the participant id.
        state: the TrustedRound of a settled round.
        orders: the participant's orders (every order of the orders file may be given).
        readings: {(participant, slot): net_wh} the participant holds (for an excluded settlement).
        client: the TLS client certificate name.
        flex_round: the flexibility round the nodes signed this round delivered, '' none; None: asked
            here (settled_flex_round), so no caller bills a delivered round without its flexibility.

    Returns:
        The RoundBill.

    Raises:
        ClientError: a node refused or answered inconsistently (not for a participant that took no part).
        InputError: the participant's keys are missing.
    """
    config = state.config
    slots = list(state.slots)
    in_round = set(slots)
    own = [o for o in orders if o.participant == participant and o.slot in in_round]
    book = Book(config, own, extra_pairs=[(participant, s) for s in slots])
    status, values = _fetch(broker, keys_dir, participant, state, client, '')
    if status == 'none' and own:  # its orders are in the round: a node without them is a failure, not absence
        raise ClientError(f'round {state.round_id}: a node holds no results for {participant}, which has orders in '
                          'the round (never submitted, or a node lost them)', 'NOT_FOUND')
    trade = 0
    if values is not None:  # its orders counted (cleared, or excluded: then with the retailer)
        index = {s: j for j, s in enumerate(slots)}
        rows = order_rows(book, set() if status == 'cleared' else {participant},
                          lambda o: tuple(int(v) for v in values[index[o.slot]]))
        trade = sum(r.amount for r in rows)
    settle_status, settled = _fetch(broker, keys_dir, participant, state, client, 'settlement')
    if settled is None:
        return RoundBill(trade, 0, 0, status, settle_status)
    if flex_round is None:
        flex_round = settled_flex_round(broker, keys_dir, state.round_id)
    deviation = sum(int(v[1]) for v in settled)
    delivered = np.zeros((len(slots), 4), dtype=object)
    if flex_round:  # every node signed that this settlement delivered flexibility: its rows must be there
        _, got = _fetch(broker, keys_dir, participant, state, client, 'delivery')
        if got is None:
            raise ClientError(f'round {state.round_id}: no delivered flexibility for {participant}, although the '
                              f'nodes signed that it settled flexibility round {flex_round}', 'NOT_FOUND')
        delivered = got
    if settle_status == 'excluded':  # no deviation settled: the retailer-only bill of its own readings
        net_of, _ = complete_readings(book, {(p, s): n for (p, s), n in readings.items() if p == participant})
        nets = [net_of.get((participant, s), 0) for s in slots]
    else:  # the deviation is from the adjusted position: planned + the activations' shift
        counted = values is not None and status != 'missing'
        nets = [int(v[0]) + int(d[3]) + (planned_position(book.order_of.get((participant, s))) if counted else 0)
                for s, v, d in zip(slots, settled, delivered, strict=True)]
    return RoundBill(trade, deviation, sum(retailer_only_amount(config, n) for n in nets), status, settle_status,
                     sum(int(d[1]) for d in delivered), sum(int(d[2]) for d in delivered))


def round_bill(broker: BrokerClient, keys_dir: str, participant: str, state: TrustedRound, orders: Sequence[Order],
               readings: Readings, client: str = 'submitter') -> tuple[int, int, int, str]:
    """bill_of_round as a tuple.

    Args:
        broker, keys_dir, participant, state, orders, readings, client: as for bill_of_round.

    Returns:
        (trade, deviation, retailer-only, settlement status), in money units.

    Raises:
        ClientError, InputError: as bill_of_round.
    """
    bill = bill_of_round(broker, keys_dir, participant, state, orders, readings, client)
    return bill.trade, bill.deviation, bill.retailer_only, bill.settle_status


@dataclass
class PeriodBills:
    """The bills of several participants over the settled rounds of a period."""
    bills: dict[str, Bill] = field(default_factory=dict)  # in the order asked for
    absent: set[str] = field(default_factory=set)  # participants that took part in none of the settled rounds
    failed: dict[str, str] = field(default_factory=dict)  # participant -> why its bill could not be fetched
    flex: dict[str, tuple[int, int]] = field(default_factory=dict)  # participant -> (flexibility revenue, penalty)
    flex_rounds: dict[str, str] = field(default_factory=dict)  # settled round -> the flexibility round it delivered
    settled: list[TrustedRound] = field(default_factory=list)  # the rounds the bills sum over
    pending: list[market_pb2.RoundState] = field(default_factory=list)  # of the period, not settled yet


def period_bills(broker: BrokerClient, keys_dir: str, participants: Sequence[str], first_day: str, last_day: str,
                 orders_path: str, readings: Readings | None = None, client: str = 'submitter',
                 round_id: str = '') -> PeriodBills:
    """Every participant's Bill summed over the settled rounds delivering from first_day to
    last_day (or of round_id alone). One participant's failure (a node refused it, its key is
    missing) is recorded in ``failed`` and the others are still billed.

    Args:
        broker: a BrokerClient.
        keys_dir: the key directory (manifest, participant keys).
        participants: the participant ids.
        first_day, last_day: the period (YYYY-MM-DD), ignored with round_id.
        orders_path: the participants' orders file (required: see the module docstring).
        readings: {(participant, slot): net_wh} held by the participants, if any.
        client: the TLS client certificate name.
        round_id: one round instead of a period.

    Returns:
        The PeriodBills.

    Raises:
        ClientError: the broker refused.
        UntrustedRound: a settled round's state is not the one its nodes signed.
        InputError: the orders file is malformed.
    """
    from ..common.errors import InputError
    rounds = [broker.status(round_id)] if round_id else [
        r for r in broker.rounds() if r.day and first_day <= r.day <= last_day]
    manifest = client_manifest(keys_dir)
    out = PeriodBills(settled=[trusted_round(r, manifest, r.round_id) for r in rounds
                               if r.settlement == market_pb2.RoundState.SETTLED],
                      pending=[r for r in rounds if r.settlement != market_pb2.RoundState.SETTLED])
    orders = {state.round_id: load_orders(orders_path, state.config) for state in out.settled}
    for state in out.settled:
        flex_round = settled_flex_round(broker, keys_dir, state.round_id)
        if flex_round:
            out.flex_rounds[state.round_id] = flex_round
    for participant in participants:
        trade = deviation = retailer_only = revenue = penalty = 0
        took_part = False
        try:
            for state in out.settled:
                bill = bill_of_round(broker, keys_dir, participant, state, orders[state.round_id], readings or {},
                                     client, out.flex_rounds.get(state.round_id, ''))
                trade, deviation, retailer_only = trade + bill.trade, deviation + bill.deviation, \
                    retailer_only + bill.retailer_only
                revenue, penalty = revenue + bill.flex_revenue, penalty + bill.flex_penalty
                took_part = took_part or bill.took_part
        except (ClientError, InputError) as exc:
            out.failed[participant] = str(exc)
            continue
        total = trade + deviation - revenue + penalty
        out.bills[participant] = Bill(participant, trade, deviation, total, retailer_only, retailer_only - total)
        if out.flex_rounds:
            out.flex[participant] = (revenue, penalty)
        if not took_part:
            out.absent.add(participant)
    return out


def period_bill(broker: BrokerClient, keys_dir: str, participant: str, first_day: str, last_day: str,
                orders_path: str, readings: Readings | None = None, client: str = 'submitter',
                round_id: str = '') -> tuple[Bill, list[TrustedRound], list[market_pb2.RoundState]]:
    """One participant's Bill summed over the settled rounds of a period (or of round_id alone).

    Args:
        broker, keys_dir, first_day, last_day, orders_path, readings, client, round_id: as for period_bills.
        participant: the participant id.

    Returns:
        (the Bill, the rounds it sums over, the rounds of the period not settled yet).

    Raises:
        ClientError: the broker refused, or the participant's bill failed.
        UntrustedRound: a settled round's state is not the one its nodes signed.
        InputError: the orders file is malformed.
    """
    result = period_bills(broker, keys_dir, [participant], first_day, last_day, orders_path, readings, client,
                          round_id)
    if participant in result.failed:
        raise ClientError(result.failed[participant])
    return result.bills[participant], result.settled, result.pending

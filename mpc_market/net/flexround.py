"""Flexibility rounds in a deployment (issue 25, docs/flexibility.md "In a deployment").

A flexibility round is a round whose RoundSpec carries the DSO's and the aggregator's public
requests (a requests CSV); every node checks them, binds their SHA-256 into the RoundParams it
signs (so a broker cannot show clients other requests than the nodes clear) and clears the round
with the registered MPC mechanism 'flex' (mpc_market.mpc.flex) over the offers participants
shared like orders (the orders' vector layout: the intake's checks apply unchanged). The round's
slots are exactly its request slots; the feeders are the market file's public [zones] table.
The nodes sign per request the procured volume, price and shortfall; each participant
reconstructs its own activation and payment from its result shares.
"""

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, replace
from decimal import Decimal
from typing import Literal

import numpy as np

from ..common.errors import EngineError, InputError
from ..market.book import Layout
from ..market.config import MarketConfig, parse_config
from ..market.flex import FlexMarket, FlexOffer, FlexRequest, FlexResult, RequestOutcome, load_requests
from ..mpc.flex import FIELDS, FlexBook
from ..mpc.jobs import ORDERS_PER_CHUNK, JobSpec, PublicOutputs, RunFigures
from .store import Round

KINDS = ('energy', 'flex')
MAX_REQUESTS_TEXT = 1 << 20  # bytes of a round's requests CSV (a spec field every node parses)
FLEX_RESULT_FIELDS = len(FIELDS)  # result shares per slot: the mechanism's (DSO Wh, aggregator Wh, payment, ...)


def round_kind(flex_requests: str) -> str:
    """'flex' for a round with requests, else 'energy'."""
    return 'flex' if flex_requests else 'energy'


def requests_sha256(flex_requests: str) -> str:
    """The hash of a round's requests text that RoundParams binds ('' for an energy round)."""
    return hashlib.sha256(flex_requests.encode()).hexdigest() if flex_requests else ''


def load_round_requests(label: str, text: str, config: MarketConfig) -> list[FlexRequest]:
    """Parse a round's requests CSV text (market.flex.load_requests' rules).

    Args:
        label: names the text in errors (e.g. 'round R requests').
        text: the CSV.
        config: the round's market.

    Returns:
        The requests in file order.

    Raises:
        InputError: too long, or a bad value (label, line and field).
    """
    if len(text.encode()) > MAX_REQUESTS_TEXT:
        raise InputError(label, 0, 'file', f'more than {MAX_REQUESTS_TEXT} bytes of requests')
    with tempfile.TemporaryDirectory(prefix='mpc-market-requests-') as tmp:  # the loader reads files
        path = os.path.join(tmp, 'requests.csv')
        with open(path, 'w', encoding='utf-8') as f:
            f.write(text)
        try:
            return load_requests(path, config)
        except InputError as exc:
            raise InputError(label, exc.line, exc.field, exc.message) from None


def round_market(round_id: str, market_toml: str, flex_requests: str,
                 offers: Iterable[FlexOffer] = ()) -> FlexMarket:
    """The FlexMarket of a flexibility round (feeders: the market's [zones]; its flex_pricing).

    Args:
        round_id: the round.
        market_toml: its market text.
        flex_requests: its requests CSV.
        offers: offers to clear (a participant's own, client side).

    Returns:
        The market.

    Raises:
        InputError: the market text or the requests do not parse.
    """
    config = parse_config(f'round {round_id}', market_toml)
    requests = load_round_requests(f'round {round_id} requests', flex_requests, config)
    return FlexMarket(config, tuple(requests), tuple(offers), dict(config.zone_of), config.flex_pricing)


def offer_layout(round_: Round) -> Layout:
    """The layout of a round's order packages: the market's, or for a flexibility round its
    offers' (FlexMarket.levels: up to the highest cap), as its clients encode them (FlexBook).

    Args:
        round_: the round.

    Returns:
        The layout.

    Raises:
        InputError: the market text or the requests do not parse (they did when the round opened).
    """
    if not round_.flex_requests:
        return Layout.for_config(parse_config(f'round {round_.round_id}', round_.market_toml))
    market = round_market(round_.round_id, round_.market_toml, round_.flex_requests)
    return Layout.for_config(market.config, market.levels)


def flex_spec_problem(round_id: str, slots: Sequence[int], market_toml: str, flex_requests: str,
                      readings_deadline_ms: int) -> str:
    """What is wrong with a flexibility round's specification ('' if nothing).

    Args:
        round_id, slots, market_toml, flex_requests, readings_deadline_ms: the RoundSpec's fields.

    Returns:
        A one-line reason, or ''.
    """
    try:
        market = round_market(round_id, market_toml, flex_requests)
    except InputError as exc:
        return f'flexibility requests: {exc}'
    if sorted(set(slots)) != market.request_slots:
        return (f'a flexibility round\'s slots are its request slots {market.request_slots[:20]}, '
                f'not {sorted(set(slots))[:20]}')
    if readings_deadline_ms:
        return ('a flexibility round has no readings window of its own: its energy round\'s settlement '
                'delivers it (--energy-round)')
    return ''


def energy_round_problem(round_id: str, slots: Sequence[int], market_toml: str, gate_closure_ms: int,
                         energy: Round | None, bound: Round | None) -> str:
    """What is wrong with a flexibility round's energy round ('' if nothing): the round whose
    settlement delivers its activations must be an energy round of this store with a readings
    window, of the same market text, whose slots hold the flexibility round's, not failed for good,
    settling or settled yet, whose gate closes no later than the flexibility gate (a participant
    must not change its baseline after it learns its activation) and whose readings close after
    it, and bound to no other flexibility round.

    Args:
        round_id, slots, market_toml, gate_closure_ms: the flexibility round's specification.
        energy: the named energy round as this store holds it (None: unknown here).
        bound: the flexibility round already bound to it, if any.

    Returns:
        A one-line reason, or ''.
    """
    if energy is None:
        return 'the energy round it names is unknown here'
    name = f'energy round {energy.round_id}'
    if energy.flex_requests:
        return f'{name} is a flexibility round'
    if not energy.readings_deadline_ms:
        return f'{name} has no readings window: it is not settled'
    if energy.market_toml != market_toml:
        return f'{name} is of another market text'
    if not set(slots) <= set(energy.slots):
        return f'{name} does not deliver slots {sorted(set(slots) - set(energy.slots))[:20]}'
    if energy.settlement in ('settling', 'settled') or energy.state == 'failed' and energy.final:
        return f'{name} is {energy.settlement or energy.state}: its positions can no longer be adjusted'
    if gate_closure_ms < energy.gate_closure_ms:
        return (f'the flexibility gate closes before the gate of {name}: its orders (the baselines) must be '
                'final before anyone learns an activation')
    if gate_closure_ms >= energy.readings_deadline_ms:
        return f'the flexibility gate closes after the readings deadline of {name}'
    if bound is not None and bound.round_id != round_id:
        return f'{name} is settled with flexibility round {bound.round_id} already'
    return ''


Delivery = Literal['none', 'deliver', 'wait', 'abandon']


def delivery_decision(flex: Round | None, at_ms: int) -> Delivery:
    """What an energy round's settlement does with its flexibility round, by this store's state.

    'deliver' a cleared one (its activations were published: they must be settled); 'wait' while it
    may still clear (clearing, or failed with a rerun to come); 'none' without one or after it failed
    for good; 'abandon' one still open or closed past its gate (it never cleared, so nothing was
    published: it is failed for good and the energy round settles without; a half-opened round
    must not block everyone's bills).

    Args:
        flex: the flexibility round bound to the energy round, or None.
        at_ms: now, unix ms.

    Returns:
        The decision.
    """
    if flex is None or (flex.state == 'failed' and flex.final):
        return 'none'
    if flex.state == 'cleared':
        return 'deliver'
    if flex.state in ('open', 'closed') and flex.gate_closure_ms < at_ms:
        return 'abandon'
    return 'wait'


def flex_job_spec(market: FlexMarket, participants: Sequence[str], nodes: int) -> JobSpec:
    """The JobSpec of a deployment's flexibility clearing over the participants whose offers every
    node holds (sorted): the FlexBook's, with a placeholder offer per participant (the nodes never
    see an offer: the book only fixes the participants, slots and the public plan).

    Args:
        market: the round's market (requests, feeders).
        participants: the held participants, sorted.
        nodes: m.

    Returns:
        The spec (mechanism 'flex' via allocation, JobSpec.flex the plan).

    Raises:
        EngineError: the book's participants are not the held ones (a bug).
    """
    first = market.request_slots[0]
    placeholders = tuple(FlexOffer(p, first, 'up', 1, Decimal(0)) for p in participants)
    book = FlexBook(replace(market, offers=placeholders))
    if list(book.participants) != list(participants) or list(book.slots) != market.request_slots:
        raise EngineError('the flexibility job does not list the held participants and request slots')
    return book.spec(nodes, ORDERS_PER_CHUNK)


def outcomes_of(market: FlexMarket, public: PublicOutputs) -> list[RequestOutcome]:
    """Every request's public outcome from a flexibility run's opened values.

    Args:
        market: the round's market.
        public: the run's public outputs (slots: one row per request: level, target_wh, residual_wh).

    Returns:
        RequestOutcome per request, in the market's order.
    """
    opened = {row['request']: row for row in public.slots}
    rows = []
    for r in market.requests:
        row = opened[r.request]
        level = None if int(row['level']) < 0 else int(row['level'])
        procured = int(row['target_wh']) - int(row['residual_wh'])
        rows.append(RequestOutcome(r.request, r.slot, level,
                                   None if level is None else market.config.level_price_units(level),
                                   r.volume_wh, procured, int(row['residual_wh']), r.volume_wh - procured))
    return rows


def flex_public_body(round_id: str, outcomes: Sequence[RequestOutcome], participants: int, excluded: int,
                     missing: int) -> str:
    """Canonical JSON of what a flexibility round makes public: per request the marginal level and
    price, procured, residual and shortfall; counts; no identity, no offer.

    Args:
        round_id: the round.
        outcomes: every request's outcome.
        participants, excluded, missing: the counts of the run.

    Returns:
        The body every node signs (PUBLIC_DOMAIN).
    """
    return json.dumps({'round_id': round_id, 'kind': 'flex', 'mechanism': 'flex',
                       'requests': [asdict(o) for o in outcomes], 'participants': participants,
                       'excluded': excluded, 'missing': missing}, sort_keys=True, separators=(',', ':'))


def outcomes_of_body(market: FlexMarket, body: dict[str, object]) -> list[RequestOutcome]:
    """The one decoder of flex_public_body's requests, checked against the round's requests.

    Args:
        market: the round's market (as the nodes signed it).
        body: the parsed signed body.

    Returns:
        RequestOutcome per request, in the market's order.

    Raises:
        InputError: the body is no flexibility result of these requests.
    """
    rows = body.get('requests')
    fields = [f for f in RequestOutcome.__dataclass_fields__]
    if not isinstance(rows, list) or len(rows) != len(market.requests) or not all(
            isinstance(row, dict) and sorted(row) == sorted(fields) for row in rows):
        raise InputError('public results', 0, 'requests', 'not the flexibility results of this round\'s requests')
    outcomes = []
    for r, row in zip(market.requests, rows, strict=True):
        ints = [row[f] for f in fields if f not in ('request', 'level', 'price_units')]
        if row['request'] != r.request or not all(type(v) is int for v in ints) or not all(
                row[f] is None or type(row[f]) is int for f in ('level', 'price_units')):
            raise InputError('public results', 0, 'requests', f'a malformed outcome of request {r.request}')
        outcomes.append(RequestOutcome(**row))
    return outcomes


def own_activations(market: FlexMarket, outcomes: Sequence[RequestOutcome], participant: str, status: str,
                    values: np.ndarray) -> FlexResult:
    """A participant's activations and payments from its reconstructed result values.

    Args:
        market: the round's market with the participant's own offers.
        outcomes: the signed public outcomes.
        participant: the participant.
        status: its clearing status ('cleared', or 'excluded': nothing activated).
        values: (slots, FLEX_RESULT_FIELDS) Python ints (the first three: DSO Wh, aggregator Wh, payment).

    Returns:
        The FlexResult of its offers (requests: the public outcomes).

    Raises:
        EngineError: the payment the nodes computed is not the activation's (a bug or a lying node set).
    """
    from ..mpc.flex_local import flex_result
    if not market.offers:
        return FlexResult(list(outcomes), [], [] if status == 'cleared' else [participant])
    book = FlexBook(market)
    opened = [{'request': o.request, 'level': -1 if o.level is None else o.level,
               'target_wh': o.procured_wh + o.residual_wh, 'residual_wh': o.residual_wh} for o in outcomes]
    public = PublicOutputs(opened, [] if status == 'cleared' else [participant], [], [participant], RunFigures({}))
    result = flex_result(book, public, np.asarray(values, dtype=object)[None], {'engine': 'deployment'})
    return replace(result, requests=list(outcomes))

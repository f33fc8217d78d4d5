"""Participant and operator side of a deployment: rounds, submissions, results.

Everything goes over mutual TLS with server names pinned (``broker``, ``node{i}``). The broker
only tells clients which round is open and where the nodes are; orders go from the client to
each node directly (mpc_market.net.submit), and so do result shares, which only the participant
can recombine.
"""

import hashlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from ..common.errors import InputError, KeyFileError, MarketError, Tampered
from ..common.keys import load_participant_agreement_key, load_participant_key, node_name
from ..common.manifest import Manifest, load_manifest
from ..market.book import Book
from ..market.config import MarketConfig
from ..market.flex import FlexMarket, FlexResult, RequestOutcome
from ..market.orders import load_orders, resolve_zones
from ..market.results import OrderRow, order_rows
from ..mpc import field as ff
from ..mpc.jobs import result_fields
from ..rpc import market_pb2, market_pb2_grpc
from . import sealed, tls
from .flexround import FLEX_RESULT_FIELDS, outcomes_of_body, own_activations, round_market
from .messages import (
    PUBLIC_DOMAIN,
    SETTLEMENT_DOMAIN,
    result_shares_bytes,
    results_request_bytes,
    seal_context,
    verify_public,
)
from .store import now_ms
from .submit import Submitter
from .trusted import TrustedRound, trusted_round

T = TypeVar('T')


class ClientError(MarketError):
    """A deployment request that failed; the message names the service and the reason."""

    def __init__(self, message: str, code: str = ''):
        super().__init__(message)
        self.code = code  # the gRPC status name, when a server refused


def _rpc(what: str, call: Callable[..., T], *args: object, **kwargs: object) -> T:
    try:
        return call(*args, **kwargs)
    except grpc.RpcError as exc:
        raise ClientError(f'{what}: {exc.code().name}: {exc.details()}', exc.code().name) from None


class BrokerClient:
    """The broker's round control and status over mutual TLS; every failure is a ClientError."""

    def __init__(self, address: str, keys_dir: str, client: str = 'submitter'):
        credentials = tls.client_credentials(keys_dir, 'clients', client)
        self.address = address
        self.channel = tls.secure_channel(address, credentials, 'broker')
        self.stub = market_pb2_grpc.BrokerStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def status(self, round_id: str = '') -> market_pb2.RoundState:
        """The round's state ('' the broker's latest round)."""
        return _rpc(f'broker {self.address}', self.stub.RoundStatus, market_pb2.RoundRef(round_id=round_id), timeout=30)

    def rounds(self) -> Sequence[market_pb2.RoundState]:
        """Every round, oldest first, without live counts."""
        return _rpc(f'broker {self.address}', self.stub.ListRounds, market_pb2.RoundListRequest(), timeout=30).rounds

    def open(self, round_id: str, slots: Sequence[int], gate_closure_ms: int, market_toml: str,
             readings_open_ms: int = 0, readings_deadline_ms: int = 0, day: str = '',
             flex_requests: str = '', energy_round: str = '') -> market_pb2.RoundState:
        """Open a round at every node (operators only; idempotent for the same parameters);
        flex_requests: a flexibility round's requests CSV; energy_round: the energy round whose
        settlement delivers its activations."""
        return _rpc(f'broker {self.address}', self.stub.OpenRound, market_pb2.RoundSpec(
            round_id=round_id, slots=slots, gate_closure_unix_ms=gate_closure_ms, market_toml=market_toml,
            readings_open_unix_ms=readings_open_ms, readings_deadline_unix_ms=readings_deadline_ms, day=day,
            flex_requests=flex_requests, energy_round=energy_round), timeout=60)

    def close_round(self, round_id: str) -> market_pb2.RoundState:
        """Close the round's gate now: the nodes clear it."""
        return _rpc(f'broker {self.address}', self.stub.CloseRound, market_pb2.RoundRef(round_id=round_id), timeout=30)

    def public(self, round_id: str) -> market_pb2.PublicResultSet:
        """The round's public results with every node's signature."""
        return _rpc(f'broker {self.address}', self.stub.PublicResults, market_pb2.RoundRef(round_id=round_id),
                    timeout=30)

    def settlement(self, round_id: str) -> market_pb2.PublicResultSet:
        """The round's public settlement with every node's signature."""
        return _rpc(f'broker {self.address}', self.stub.SettlementResults, market_pb2.RoundRef(round_id=round_id),
                    timeout=30)

    def wait(self, round_id: str, timeout: float, poll: float = 0.2, settled: bool = False) -> market_pb2.RoundState:
        """Wait until the round is cleared (settled, with settled=True), it failed for good (final), or timeout."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.status(round_id)
            done = (state.settlement == market_pb2.RoundState.SETTLED if settled
                    else state.state == market_pb2.RoundState.CLEARED)
            final = state.settle_final if settled else state.final  # failed for good: no rerun will come
            if done or final or time.monotonic() > deadline:
                return state
            time.sleep(poll)


def open_round_state(broker: BrokerClient, round_id: str, manifest: Manifest) -> TrustedRound:
    """The TrustedRound of an open round.

    Args:
        broker: the broker.
        round_id: the round ('' the broker's latest).
        manifest: the deployment manifest the client holds.

    Returns:
        The round, open for orders.

    Raises:
        ClientError: the broker refused, or the round is not open.
        UntrustedRound: the nodes' signatures of its parameters do not check.
    """
    state = broker.status(round_id)
    if state.state != market_pb2.RoundState.OPEN:
        phase = market_pb2.RoundState.State.Name(state.state).lower()
        if not round_id:  # the broker answered with its latest round: none is open
            raise ClientError(f'no round is open (the latest, {state.round_id}, is {phase}); '
                              'the operator opens one with `mpc-market round open`')
        raise ClientError(f'round {state.round_id} is {phase}, not open for orders')
    trusted = trusted_round(state, manifest, round_id)
    trusted.open_for_orders()
    return trusted


def client_manifest(keys_dir: str) -> Manifest:
    """The deployment manifest the client holds.

    Args:
        keys_dir: the client's key directory.

    Returns:
        The manifest.

    Raises:
        InputError: it is missing or malformed (one line).
    """
    try:
        return load_manifest(keys_dir)
    except KeyFileError as exc:
        raise InputError(keys_dir, 0, 'manifest', str(exc)) from None


@dataclass
class SubmitReport:
    round_id: str
    accepted: list[str]
    failed: dict[str, str]  # participant -> reason (names the node)
    seconds: float


def submit_orders(orders_path: str, broker: BrokerClient, keys_dir: str, round_id: str = '', client: str = 'submitter',
                  workers: int = 4, batch: int = 64) -> SubmitReport:
    """Share, sign and deliver every participant's orders of an orders file to all nodes.

    Args:
        orders_path: the orders file.
        broker: the broker.
        keys_dir: the client's keys (manifest, participant keys, TLS certificate).
        round_id: the open round ('' the broker's latest).
        client: the TLS client certificate name.
        workers: participants submitted at once.
        batch: participants per SubmitBatch request.

    Returns:
        Who was accepted by every node, who failed and why, and the seconds taken.

    Raises:
        InputError: the orders file is malformed, names a slot or zone not in the round, or a key is missing.
        ClientError: the broker refused, or the round is not open.
        UntrustedRound: the round's parameters are not signed by the manifest's nodes.
    """
    state = open_round_state(broker, round_id, client_manifest(keys_dir))
    if state.kind == 'flex':
        raise ClientError(f'round {state.round_id} is a flexibility round: submit offers with `mpc-market flex submit`')
    config = state.config
    orders = load_orders(orders_path, config)
    slots = set(state.slots)
    for o in orders:
        if o.slot not in slots:
            raise InputError(orders_path, o.line, 'slot', f'slot {o.slot} is not traded in round {state.round_id}')
    first_line: dict[str, int] = {}
    for o in orders:
        first_line.setdefault(o.participant, o.line)
        if config.zoned and o.participant not in config.zone_of:  # the nodes would exclude it
            raise InputError(orders_path, o.line, 'zone', f'{o.participant} is in no zone of round {state.round_id}')
    resolve_zones(orders_path, config, orders)  # a zone column must agree with the round's zones
    book = Book(config, orders, extra_pairs=[(p, s) for p in sorted(first_line) for s in state.slots])
    return deliver(state, book, first_line, orders_path, keys_dir, client, workers, batch)


def submit_offers(offers_path: str, broker: BrokerClient, keys_dir: str, round_id: str = '',
                  client: str = 'submitter', workers: int = 4, batch: int = 64) -> SubmitReport:
    """Share, sign and deliver every participant's flexibility offers to all nodes, as orders are:
    the offers in the orders' vector layout over the round's request slots (mpc_market.mpc.flex).

    Args:
        offers_path: the offers CSV (participant,slot,direction,volume_wh,price).
        broker, keys_dir, round_id, client, workers, batch: as for submit_orders.

    Returns:
        As submit_orders.

    Raises:
        InputError: the offers file is malformed, names a slot without a request, or a key is missing.
        ClientError: the broker refused, or the round is not an open flexibility round.
        UntrustedRound: the round's parameters (market, requests) are not signed by the manifest's nodes.
    """
    from ..market.flex import load_offers
    from ..mpc.flex import FlexBook
    state = open_round_state(broker, round_id, client_manifest(keys_dir))
    if state.kind != 'flex':
        raise ClientError(f'round {state.round_id} is an energy round: submit orders with `mpc-market submit`')
    offers = load_offers(offers_path, state.config)
    slots = set(state.slots)
    first_line: dict[str, int] = {}
    for o in offers:
        if o.slot not in slots:
            raise InputError(offers_path, o.line, 'slot', f'slot {o.slot} has no request in round {state.round_id}')
        first_line.setdefault(o.participant, o.line)
    market = round_market(state.round_id, state.market_toml, state.flex_requests, offers)
    return deliver(state, FlexBook(market), first_line, offers_path, keys_dir, client, workers, batch)


def deliver(state: TrustedRound, book: Book, first_line: dict[str, int], path: str, keys_dir: str, client: str,
            workers: int, batch: int) -> SubmitReport:
    """Encode a book's participants over the round's slots, share, sign and send them to every node.

    Args:
        state: the open round.
        book: the orders (or offers) in the orders' layout; its slots are the round's.
        first_line: {participant: its first line in path} (errors point there).
        path: the input file.
        keys_dir, client, workers, batch: as for submit_orders.

    Returns:
        The SubmitReport.

    Raises:
        InputError: a participant's key is missing.
    """
    keys: dict[str, ed25519.Ed25519PrivateKey] = {}
    for p in sorted(first_line):
        try:
            keys[p] = load_participant_key(keys_dir, p)
        except KeyFileError as exc:
            raise InputError(path, first_line[p], 'participant', str(exc)) from None
    values = book.encode(range(len(book.participants)))
    submitter = Submitter(state.endpoints(), tls.client_credentials(keys_dir, 'clients', client),
                          params_sha256={state.round_id: state.params.sha256()}, threshold=state.manifest.threshold)
    started = time.perf_counter()
    try:
        outcome = submitter.submit_many(state.round_id,
                                        [(p, keys[p], values[i]) for i, p in enumerate(book.participants)],
                                        workers, batch)
    finally:
        submitter.close()
    return SubmitReport(state.round_id, sorted(p for p, e in outcome.items() if e is None),
                        {p: e for p, e in sorted(outcome.items()) if e is not None}, time.perf_counter() - started)


# per slot: deviation Wh, amount; receives, pays, net; delivered Wh, flexibility payment, penalty, shift Wh
RESULT_WIDTH = {'settlement': 2, 'retailer': 3, 'delivery': 4}



def fetch_own_results(broker: BrokerClient, keys_dir: str, participant: str, round_id: str = '',
                      client: str = 'submitter', kind: str = '',
                      state: TrustedRound | None = None) -> tuple[TrustedRound, str, np.ndarray | None]:
    """This participant's reconstructed results of one kind.

    Each node gets its own signed single-use request and seals its shares to the participant's
    X25519 key; only this participant's key opens them.

    Args:
        broker: the broker (asked for the round's state unless state is given).
        keys_dir: the client's keys (manifest, participant keys, TLS certificate).
        participant: the participant.
        round_id: the round ('' the broker's latest), unless state is given.
        client: the TLS client certificate name.
        kind: '' the clearing (matched, unmatched, amount; in a zoned market also local and
            cross-zone Wh), 'settlement' (deviation Wh, deviation amount), 'retailer' (the
            retailer's receives, pays and net per slot; the retailer's key and certificate only),
            'delivery' (of an energy round settled with a flexibility round: delivered Wh, payment,
            penalty and the shift of its adjusted from its planned position).
        state: the round, already trusted.

    Returns:
        (round, status, values (slots, fields) as Python ints, None if the participant is missing).

    Raises:
        InputError: the participant's keys or the manifest are missing.
        ClientError: a node refused, replied to another request, with a bad signature or sealed
            shares that do not open, the nodes disagree, or the shares are inconsistent.
        UntrustedRound: the round's parameters are not signed by the manifest's nodes.
    """
    state = state or trusted_round(broker.status(round_id), client_manifest(keys_dir), round_id)
    try:
        key = load_participant_key(keys_dir, participant)
        agreement_key = load_participant_agreement_key(keys_dir, participant)
    except KeyFileError as exc:
        raise InputError(keys_dir, 0, 'participant', str(exc)) from None
    verify_keys = state.manifest.verify_keys()
    credentials = tls.client_credentials(keys_dir, 'clients', client)
    replies: list[market_pb2.ResultShares] = []
    plaintexts: list[bytes] = []
    for i, address in enumerate(state.addresses):
        unix_ms, nonce = now_ms(), os.urandom(16).hex()
        request = market_pb2.ResultsRequest(
            round_id=state.round_id, participant=participant, unix_ms=unix_ms, node_index=i, nonce=nonce, kind=kind,
            signature=key.sign(results_request_bytes(state.round_id, participant, i, nonce, unix_ms, kind)))
        channel = tls.secure_channel(address, credentials, node_name(i))
        try:
            reply = _rpc(f'node {i} ({address})', market_pb2_grpc.NodeStub(channel).FetchResults, request, timeout=30)
        finally:
            channel.close()
        if reply.node_index != i or reply.nonce != nonce or reply.participant != participant \
                or reply.round_id != state.round_id or reply.kind != kind:
            raise ClientError(f'node {i}: a reply to another request')
        signed = result_shares_bytes(state.round_id, participant, i, reply.status, nonce,
                                     hashlib.sha256(reply.ephemeral_public + reply.shares).hexdigest(), kind)
        try:
            verify_keys[i].verify(reply.node_signature, signed)
        except InvalidSignature:
            raise ClientError(f'node {i}: result shares with a bad signature') from None
        try:
            plaintexts.append(sealed.open_sealed(agreement_key, reply.ephemeral_public, reply.shares,
                                                 seal_context(state.round_id, participant, i, reply.status, nonce,
                                                              kind)))
        except sealed.SealError as exc:
            raise ClientError(f'node {i}: {exc}') from None
        replies.append(reply)
    statuses = {r.status for r in replies}
    if len(statuses) != 1:
        raise ClientError(f'nodes disagree on the status of {participant}: {sorted(statuses)}')
    status = statuses.pop()
    if status == 'missing':
        return state, status, None
    slots = len(state.slots)
    fields = RESULT_WIDTH.get(kind) or (FLEX_RESULT_FIELDS if state.kind == 'flex' else result_fields(state.config))
    try:
        shares = [ff.to_ints(np.frombuffer(p, dtype='<u4').reshape(ff.LIMBS, slots, fields)) for p in plaintexts]
    except ValueError:
        raise ClientError('result shares of the wrong size') from None
    values, consistent = ff.recombine(shares, state.manifest.threshold)
    if not np.all(consistent):
        raise ClientError('result shares from the nodes are inconsistent')
    return state, status, np.array(ff.signed(values), dtype=object).reshape(slots, fields)


def own_order_rows(state: TrustedRound, status: str, values: np.ndarray, orders_path: str,
                   participant: str) -> tuple[MarketConfig, list[OrderRow]]:
    """This participant's OrderRows (the rows of participants.csv of `mpc-market clear`).

    Args:
        state: the round.
        status: the participant's clearing status (not 'cleared': its orders settle with the retailer).
        values: its reconstructed clearing values (see fetch_own_results).
        orders_path: its orders file.
        participant: the participant.

    Returns:
        (the round's market config, the participant's rows).

    Raises:
        InputError: the orders file is malformed.
    """
    config = state.config
    orders = [o for o in load_orders(orders_path, config) if o.participant == participant]
    book = Book(config, orders, extra_pairs=[(participant, s) for s in state.slots])
    excluded: set[str] = set() if status == 'cleared' else {participant}
    index = {s: j for j, s in enumerate(state.slots)}
    return config, order_rows(book, excluded, lambda o: tuple(int(v) for v in values[index[o.slot]]))


def fetch_public(broker: BrokerClient, keys_dir: str, round_id: str = '',
                 settlement: bool = False) -> tuple[TrustedRound, dict[str, Any]]:
    """The public results (or the public settlement), checked against every node of the client's manifest.

    Args:
        broker: the broker.
        keys_dir: the client's keys (manifest).
        round_id: the round ('' the broker's latest).
        settlement: the public settlement instead of the clearing's results.

    Returns:
        (round, the signed body as a dict).

    Raises:
        InputError: the manifest is missing.
        ClientError: the broker refused, a signature is missing or bad, or the body is no JSON
            object of this round.
        UntrustedRound: the round's parameters are not signed by the manifest's nodes.
    """
    import json
    state = trusted_round(broker.status(round_id), client_manifest(keys_dir), round_id)
    result = broker.settlement(state.round_id) if settlement else broker.public(state.round_id)
    signatures = {s.node_index: s.signature for s in result.signatures}
    what = "settlement" if settlement else "results"
    try:
        verify_public(result.body, signatures, state.manifest.verify_keys(),
                      SETTLEMENT_DOMAIN if settlement else PUBLIC_DOMAIN)
        body = json.loads(result.body)
    except (Tampered, ValueError) as exc:  # a signature missing or bad, or a body that is no JSON
        raise ClientError(f'public {what}: {exc}') from None
    if not isinstance(body, dict) or body.get('round_id') != state.round_id:
        raise ClientError(f'public {what}: signed for another round than {state.round_id}')
    return state, body



FlexPublic = tuple[TrustedRound, FlexMarket, list[RequestOutcome], dict[str, Any]]


def fetch_flex_public(broker: BrokerClient, keys_dir: str, round_id: str = '') -> FlexPublic:
    """A flexibility round's public outcomes, checked against every node of the client's manifest.

    Args:
        broker: the broker.
        keys_dir: the client's keys (manifest).
        round_id: the round ('' the broker's latest).

    Returns:
        (round, its market with the signed requests, every request's outcome, the signed body).

    Raises:
        InputError: the manifest is missing, or the body is no flexibility result of the requests.
        ClientError: as fetch_public, or the round is an energy round.
        UntrustedRound: the round's parameters are not signed by the manifest's nodes.
    """
    state, body = fetch_public(broker, keys_dir, round_id)
    if state.kind != 'flex':
        raise ClientError(f'round {state.round_id} is an energy round')
    market = round_market(state.round_id, state.market_toml, state.flex_requests)
    return state, market, outcomes_of_body(market, body), body


def fetch_own_activations(broker: BrokerClient, keys_dir: str, participant: str, offers_path: str,
                          round_id: str = '', client: str = 'submitter') -> tuple[str, FlexMarket, FlexResult]:
    """A participant's own activations and payments in a flexibility round, from its result shares.

    Args:
        broker, keys_dir, round_id, client: as for fetch_own_results.
        participant: the participant.
        offers_path: its offers file (its rows of it are the offers it submitted).

    Returns:
        (status, the round's market with the participant's offers, its FlexResult).

    Raises:
        InputError: keys or the offers file are missing or malformed.
        ClientError: as fetch_own_results; the participant took no part (missing).
        EngineError: the nodes' payment is not the activation's.
        UntrustedRound: the round's parameters are not signed by the manifest's nodes.
    """
    from ..market.flex import load_offers
    state, _, outcomes, _ = fetch_flex_public(broker, keys_dir, round_id)
    _, status, values = fetch_own_results(broker, keys_dir, participant, state.round_id, client, state=state)
    if values is None:
        raise ClientError(f'round {state.round_id}: {participant}: no offer counted (not every node held the same '
                          'submission)')
    offers = [o for o in load_offers(offers_path, state.config) if o.participant == participant]
    market = round_market(state.round_id, state.market_toml, state.flex_requests, offers)
    return status, market, own_activations(market, outcomes, participant, status, values)

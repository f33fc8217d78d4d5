"""``mpc-market broker --config BROKER.toml``: opens and closes rounds and publishes their results.

The broker holds no secret: it never receives an order, a share, an envelope or a reading, only
round parameters and the public results, which it accepts when every node signed the same
body. Its state (rounds, public results) is in SQLite, so it can be killed and restarted at any
time; the nodes keep the orders and the round state, and every broker request is idempotent.

A scheduler closes each round at its gate closure (CloseRound at every node), watches the
nodes, collects the signed public results, and re-runs a failed clearing once every node is
back (up to max_attempts), keeping the failure reason visible meanwhile.
"""

import logging
import os
from collections.abc import Mapping, Sequence
from concurrent import futures
from typing import Any

import grpc
from cryptography.hazmat.primitives.asymmetric import ed25519
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ..common.days import DAY_RULE, is_day
from ..common.errors import BadParameter, Conflict, InputError, Malformed, NotFound, Tampered, Unreachable, WrongPhase
from ..common.files import make_private_dir
from ..common.keys import load_node_verify_keys, node_name
from ..common.logs import event
from ..common.names import check_round_id
from ..rpc import market_pb2, market_pb2_grpc
from . import metrics, tls
from .calendar import Calendar, due
from .config import BrokerConfig
from .flexround import energy_round_problem, round_kind
from .messages import (
    PUBLIC_DOMAIN,
    ROUND_PARAMS_DOMAIN,
    SETTLEMENT_DOMAIN,
    RoundParams,
    public_result_set,
    settlement_enum,
    spec_problem,
    verify_public,
)
from .server import ClientNames, check_free, domain_errors, run_server
from .store import (
    ROUND_LATER_COLUMNS,
    ROUNDS_DDL,
    Round,
    SqliteStore,
    add_later_columns,
    decode_signatures,
    encode_signatures,
    now_ms,
)

log = logging.getLogger('mpc_market.broker')



STATE = market_pb2.RoundState



SCHEMA = ROUNDS_DDL + """
CREATE TABLE IF NOT EXISTS public_results (
    round_id TEXT PRIMARY KEY, body TEXT NOT NULL, signatures TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS settlement_public (
    round_id TEXT PRIMARY KEY, body TEXT NOT NULL, signatures TEXT NOT NULL);
"""

# the round columns update may set (their names go into the SQL text)
UPDATABLE = frozenset(('state', 'reason', 'attempts', 'gate_closure_ms', 'settlement', 'settle_reason',
                       'settle_attempts', 'readings_deadline_ms', 'final', 'settle_final'))
PUBLIC_TABLES = ('public_results', 'settlement_public')
HEALTH_DEADLINE_S = 3.0   # a node's health check: an answer later than this counts as not serving

Reply = tuple[Any, str | None]  # a node's reply (a generated message, None if it failed) and the error



class BrokerStore(SqliteStore):
    """Rounds and public results (SQLite, WAL): everything the broker knows."""

    schema = SCHEMA

    def __init__(self, path: str):
        super().__init__(path)
        add_later_columns(self._db, ROUND_LATER_COLUMNS)

    def add(self, spec: Any, params: str, params_signatures: Mapping[int, bytes]) -> None:
        """Record an opened round with the parameters every node signed (idempotent).

        Args:
            spec: the RoundSpec the round was opened with.
            params: the canonical JSON of its RoundParams.
            params_signatures: node index -> that node's signature of params.

        Raises:
            Malformed: the round id is not a valid name.
        """
        round_ = Round.opened(spec.round_id, spec.slots, spec.gate_closure_unix_ms, spec.market_toml,
                              spec.readings_open_unix_ms, spec.readings_deadline_unix_ms, spec.day, params,
                              params_signatures, getattr(spec, 'flex_requests', ''), getattr(spec, 'energy_round', ''))
        with self._transaction() as db:
            self._insert_round(db, round_)

    def get(self, round_id: str) -> Round | None:
        """A round by id; without an id the latest open round, else the latest round.

        Args:
            round_id: the round's id, or ''.

        Returns:
            The round, None if there is none.
        """
        found = (self._select_rounds(None, 'WHERE round_id = ?', (round_id,)) if round_id else
                 self._select_rounds(None, "ORDER BY state = 'open' DESC, created_ms DESC LIMIT 1"))
        return found[0] if found else None

    def rounds(self) -> list[Round]:
        """Every round, oldest first (the operator page)."""
        with self._lock:
            return self._select_rounds(None, 'ORDER BY created_ms, round_id')

    def pending(self) -> list[Round]:
        """Rounds with a phase still to run (clearing, or settlement after the clearing), oldest first."""
        return self._select_rounds(None, "WHERE state IN ('open', 'clearing') OR (state = 'failed' AND final = 0) "
                                   "OR (state = 'cleared' AND readings_deadline_ms > 0 AND settlement != 'settled' "
                                   'AND settle_final = 0) ORDER BY created_ms')

    def update(self, round_id: str, /, **fields: object) -> None:
        """Set columns of a round, in one transaction.

        Args:
            round_id: the round (none of that id: nothing changes).
            fields: column -> value, of the UPDATABLE columns (flags as 0/1 or bool).

        Raises:
            BadParameter: a field is not an updatable column (nothing is written).
        """
        unknown = sorted(set(fields) - UPDATABLE)
        if unknown:  # the column names go into the SQL text: a real check, not an assert
            raise BadParameter('column', f'not an updatable round column: {", ".join(map(repr, unknown))}')
        with self._transaction() as db:
            for key, value in fields.items():
                db.execute(f'UPDATE rounds SET {key} = ? WHERE round_id = ?', (value, round_id))

    def publish(self, round_id: str, body: str, signatures: Mapping[int, bytes]) -> None:
        """Store the public results every node signed; the round is then cleared.

        Args:
            round_id: the round.
            body: the signed body.
            signatures: node index -> signature.
        """
        with self._transaction() as db:
            db.execute('INSERT OR REPLACE INTO public_results VALUES (?, ?, ?)',
                       (round_id, body, encode_signatures(signatures)))
            db.execute("UPDATE rounds SET state = 'cleared', reason = '' WHERE round_id = ?", (round_id,))

    def publish_settlement(self, round_id: str, body: str, signatures: Mapping[int, bytes]) -> None:
        """Store the public settlement every node signed; the round is then settled.

        Args:
            round_id: the round.
            body: the signed body.
            signatures: node index -> signature.
        """
        with self._transaction() as db:
            db.execute('INSERT OR REPLACE INTO settlement_public VALUES (?, ?, ?)',
                       (round_id, body, encode_signatures(signatures)))
            db.execute("UPDATE rounds SET settlement = 'settled', settle_reason = '' WHERE round_id = ?", (round_id,))

    def public(self, round_id: str, table: str = 'public_results') -> tuple[str, dict[int, bytes]] | None:
        """A round's signed public results or settlement.

        Args:
            round_id: the round.
            table: 'public_results' or 'settlement_public'.

        Returns:
            (body, node index -> signature), None if not published.

        Raises:
            BadParameter: table is neither.
        """
        if table not in PUBLIC_TABLES:  # goes into the SQL text: a real check
            raise BadParameter('table', f'not a public results table: {table!r}')
        with self._lock:
            row = self._db.execute(f'SELECT body, signatures FROM {table} WHERE round_id = ?', (round_id,)).fetchone()
        return None if row is None else (row[0], decode_signatures(row[1]))



class Nodes:
    """The broker's connections to the market nodes (broker certificate, names pinned)."""

    def __init__(self, config: BrokerConfig):
        credentials = tls.client_credentials(config.keys, 'broker', 'broker')
        self.addresses = config.nodes
        self.verify_keys: list[ed25519.Ed25519PublicKey] = load_node_verify_keys(config.keys, len(config.nodes))
        self.channels = [tls.secure_channel(a, credentials, node_name(i)) for i, a in enumerate(config.nodes)]
        self.stubs = [market_pb2_grpc.NodeStub(c) for c in self.channels]
        self.health = [health_pb2_grpc.HealthStub(c) for c in self.channels]

    def close(self) -> None:
        """Close the channels."""
        for channel in self.channels:
            channel.close()

    def call(self, method: str, request: Any, timeout: float = 10, wait_for_ready: bool = False) -> list[Reply]:
        """[(reply or None, error or None)] of method at every node, in parallel.

        wait_for_ready: wait (within timeout) for a node's channel to connect instead of failing at
        once while it is in reconnect backoff: for OpenRound, which a node that has just started
        must not fail; the calendar's close and settle calls and status reads fail fast (a lost
        node is then seen at once, and the round rerun)."""
        def one(stub: Any) -> Reply:
            try:
                return getattr(stub, method)(request, timeout=timeout, wait_for_ready=wait_for_ready), None
            except grpc.RpcError as exc:
                return None, f'{exc.code().name}: {exc.details()}'
        with futures.ThreadPoolExecutor(len(self.stubs)) as pool:
            return list(pool.map(one, self.stubs))

    def serving(self) -> list[bool]:
        """Per node whether its health check answers SERVING (within HEALTH_DEADLINE_S)."""
        def one(stub: Any) -> bool:
            try:
                return bool(stub.Check(health_pb2.HealthCheckRequest(service=''), timeout=HEALTH_DEADLINE_S).status ==
                            health_pb2.HealthCheckResponse.SERVING)
            except grpc.RpcError:
                return False
        with futures.ThreadPoolExecutor(len(self.health)) as pool:
            return list(pool.map(one, self.health))



def open_at_nodes(store: BrokerStore, nodes: Nodes, spec: Any) -> str:
    """Open a round at every node, then record it; '' on success, else why not. Nodes that did open
    it keep it idempotently, so a retry (an operator's, or the calendar's next tick) opens it everywhere."""
    try:
        expected = RoundParams.of(spec.round_id, spec.slots, spec.market_toml, spec.gate_closure_unix_ms,
                                  spec.readings_open_unix_ms, spec.readings_deadline_unix_ms, spec.day,
                                  len(nodes.addresses), spec.flex_requests, spec.energy_round)
    except InputError as exc:
        return f'market: {exc}'
    replies = nodes.call('OpenRound', spec, wait_for_ready=True)
    failures = [f'node {i} ({nodes.addresses[i]}): {error}' for i, (_, error) in enumerate(replies) if error]
    if failures:
        return '; '.join(failures)
    signatures = {}
    for i, (reply, _) in enumerate(replies):  # every node signed exactly these parameters, or the round is not open
        own = [s.signature for s in reply.params_signatures if s.node_index == i]
        if reply.params != expected.to_json() or not own:
            return f'node {i} holds other parameters for round {spec.round_id} (opened before with others?)'
        signatures[i] = own[0]
    try:
        verify_public(expected.to_json(), signatures, nodes.verify_keys, ROUND_PARAMS_DOMAIN)
    except Tampered as exc:
        return str(exc)
    store.add(spec, expected.to_json().decode(), signatures)
    log.info('round %s opened (%s): %d slots, gate closure %d', spec.round_id, round_kind(spec.flex_requests),
             len(spec.slots), spec.gate_closure_unix_ms, extra=event(spec.round_id, 'open'))
    return ''



def window_problem(spec: Any) -> str:
    """Why a round's readings window or day is not acceptable ('' if it is)."""
    if spec.day and not is_day(spec.day):
        return f'day {spec.day[:20]!r} is not {DAY_RULE}'
    if not spec.readings_deadline_unix_ms:
        return '' if not spec.readings_open_unix_ms else 'a readings window needs a deadline'
    if spec.readings_deadline_unix_ms <= spec.gate_closure_unix_ms:
        return 'the readings deadline must be after the gate closure'
    if spec.readings_open_unix_ms > spec.readings_deadline_unix_ms:
        return 'the readings window opens after its deadline'
    return ''



@domain_errors('broker')
class BrokerService(market_pb2_grpc.BrokerServicer):
    def __init__(self, config: BrokerConfig, store: BrokerStore, nodes: Nodes):
        self.config = config
        self.store = store
        self.nodes = nodes

    def _state(self, round_: Round, counts: bool = True) -> Any:
        """The round as clients see it; the live accepted counts only for operators (counts)."""
        live = [r for r, _ in self.nodes.call('RoundStatus', market_pb2.RoundRef(round_id=round_.round_id),
                                              timeout=3) if r is not None] if counts else []
        return market_pb2.RoundState(round_id=round_.round_id, state=getattr(STATE, round_.state.upper()),
                                     reason=round_.reason, gate_closure_unix_ms=round_.gate_closure_ms,
                                     accepted=min(r.accepted for r in live) if live else 0, slots=round_.slots,
                                     market_toml=round_.market_toml, node_addresses=self.nodes.addresses,
                                     attempts=round_.attempts,
                                     settlement=settlement_enum(round_.state, round_.readings_deadline_ms,
                                                                round_.settlement),
                                     settle_reason=round_.settle_reason,
                                     readings_open_unix_ms=round_.readings_open_ms,
                                     readings_deadline_unix_ms=round_.readings_deadline_ms, day=round_.day,
                                     readings=min(r.readings for r in live) if live else 0,
                                     settle_attempts=round_.settle_attempts, params=round_.params.encode(),
                                     final=round_.final, settle_final=round_.settle_final,
                                     flex_requests=round_.flex_requests, energy_round=round_.energy_round,
                                     params_signatures=[market_pb2.NodeSignature(node_index=i, signature=sig)
                                                        for i, sig in round_.params_signatures])

    def OpenRound(self, request: Any, context: grpc.ServicerContext) -> Any:
        check_round_id(request.round_id)
        if request.gate_closure_unix_ms <= now_ms():
            raise Malformed('the gate closure is in the past')
        problem = window_problem(request) or spec_problem(request, len(self.nodes.addresses))
        existing = self.store.get(request.round_id)
        if not problem and request.energy_round and existing is None:  # the nodes check it against their stores too
            problem = energy_round_problem(request.round_id, request.slots, request.market_toml,
                                           request.gate_closure_unix_ms, self.store.get(request.energy_round),
                                           self.store.flex_round_of(request.energy_round))
        if problem:
            raise Malformed(problem)
        if existing is not None:
            if (existing.slots, existing.gate_closure_ms, existing.market_toml, existing.readings_open_ms,
                    existing.readings_deadline_ms, existing.day, existing.flex_requests, existing.energy_round) == (
                    tuple(sorted(request.slots)), request.gate_closure_unix_ms, request.market_toml,
                    request.readings_open_unix_ms, request.readings_deadline_unix_ms, request.day,
                    request.flex_requests, request.energy_round):
                return self._state(existing)  # idempotent: the same request retried
            raise Conflict(f'round {request.round_id} exists already ({existing.state}); open a new round id')
        failures = open_at_nodes(self.store, self.nodes, request)
        if failures:
            raise Unreachable('round not opened: ' + failures)
        return self._state(self._round(request.round_id))

    def CloseRound(self, request: Any, context: grpc.ServicerContext) -> Any:
        """Move the gate closure to now, or once cleared the readings deadline; the scheduler then
        clears (settles) the round at the nodes."""
        round_ = self._round(request.round_id)
        if round_.state == 'open' and round_.gate_closure_ms > now_ms():
            self.store.update(round_.round_id, gate_closure_ms=now_ms())
        elif round_.state == 'cleared' and round_.readings_deadline_ms > now_ms():
            self.store.update(round_.round_id, readings_deadline_ms=now_ms())
        return self._state(self._round(round_.round_id))

    def RoundStatus(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._state(self._round(request.round_id), counts=tls.client_name(context) in self.config.operators)

    def PublicResults(self, request: Any, context: grpc.ServicerContext) -> Any:
        round_ = self._round(request.round_id)
        stored = self.store.public(round_.round_id)
        if stored is None:
            raise WrongPhase(f'round {round_.round_id} is {round_.state}'
                             + (f' ({round_.reason})' if round_.reason else ''))
        return public_result_set(round_.round_id, *stored)

    def SettlementResults(self, request: Any, context: grpc.ServicerContext) -> Any:
        round_ = self._round(request.round_id)
        stored = self.store.public(round_.round_id, 'settlement_public')
        if stored is None:
            raise WrongPhase(f'round {round_.round_id} is not settled'
                             + (f' ({round_.settle_reason})' if round_.settle_reason else ''))
        return public_result_set(round_.round_id, *stored)

    def ListRounds(self, request: Any, context: grpc.ServicerContext) -> Any:
        return market_pb2.RoundList(rounds=[self._state(r, counts=False) for r in self.store.rounds()])

    def _round(self, round_id: str) -> Round:
        """The round of a request ('': the latest open, else latest); NotFound if there is none."""
        round_ = self.store.get(round_id)
        if round_ is None:
            raise NotFound(f'unknown round {round_id!r}' if round_id else 'no open round')
        return round_



class Scheduler:
    """Gate closure, progress watching, result collection and re-runs, one pass per poll."""

    def __init__(self, config: BrokerConfig, store: BrokerStore, nodes: Nodes):
        self.config, self.store, self.nodes = config, store, nodes
        self.verify_keys = nodes.verify_keys

    def step(self) -> None:
        """One pass: open the calendar's due rounds, then advance every pending round."""
        if isinstance(self.config.calendar, Calendar):
            self._open_calendar_rounds(self.config.calendar)
        for round_ in self.store.pending():
            try:
                self._advance(round_)
            except Exception:  # noqa: BLE001 - keep scheduling the other rounds
                log.exception('round %s: scheduler error', round_.round_id)

    def _open_calendar_rounds(self, calendar: Calendar) -> None:
        """Open the calendar's rounds that are due and not yet known (ids follow from their times)."""
        for plan in due(calendar, now_ms()):
            if self.store.get(plan.round_id) is not None:
                continue
            spec = market_pb2.RoundSpec(round_id=plan.round_id, slots=plan.slots,
                                        gate_closure_unix_ms=plan.gate_closure_ms,
                                        market_toml=calendar.market_toml(plan.mechanism),
                                        readings_open_unix_ms=plan.readings_open_ms,
                                        readings_deadline_unix_ms=plan.readings_deadline_ms, day=plan.day)
            failures = open_at_nodes(self.store, self.nodes, spec)
            if failures:
                log.warning('calendar round %s not opened yet: %s', plan.round_id, failures)

    def _advance(self, round_: Round) -> None:
        round_id = round_.round_id
        if round_.state == 'cleared':
            self._advance_settlement(round_)
            return
        if round_.state == 'open':
            if round_.gate_closure_ms > now_ms() or self._baselines_pending(round_):
                return
            self._close(round_, rerun=False)
            return
        replies = self.nodes.call('RoundStatus', market_pb2.RoundRef(round_id=round_id), timeout=5)
        states = [STATE.State.Name(r.state).lower() if r is not None else None for r, _ in replies]
        if all(s == 'cleared' for s in states):
            self._collect(round_)
        elif 'clearing' in states:
            return
        else:
            reason = failure_reason(replies, states, 'failed', 'reason') or 'clearing did not complete at every node'
            final = any(r is not None and r.final for r, _ in replies)
            if round_.state != 'failed' or round_.reason != reason or round_.final != final:
                log.warning('round %s failed%s: %s', round_id, ' (deterministic: not retried)' if final else '', reason,
                            extra=event(round_id, 'clearing'))
                self.store.update(round_id, state='failed', reason=reason, final=int(final))
            if not final and self._may_rerun(states, round_.attempts):
                self._close(round_, rerun='cleared' in states)

    def _advance_settlement(self, round_: Round) -> None:
        """After the readings deadline: settle at every node, collect the signed public settlement, and
        re-run a failed settlement once every node is back. The nodes' states decide, so a restarted
        broker never settles a round twice."""
        round_id = round_.round_id
        if now_ms() <= round_.readings_deadline_ms or self._delivery_pending(round_):
            return
        replies = self.nodes.call('RoundStatus', market_pb2.RoundRef(round_id=round_id), timeout=5)
        phases = [STATE.Settlement.Name(r.settlement).lower() if r is not None else None for r, _ in replies]
        if all(p == 'settled' for p in phases):
            self._collect(round_, settlement=True)
        elif 'settling' in phases:
            return
        elif all(p == 'readings' for p in phases):  # no node has started (the broker died before asking)
            self._settle(round_, rerun=False)
        else:
            reason = (failure_reason(replies, phases, 'settle_failed', 'settle_reason')
                      or 'settlement did not complete at every node')
            final = any(r is not None and r.settle_final for r, _ in replies)
            if round_.settlement != 'failed' or round_.settle_reason != reason or round_.settle_final != final:
                log.warning('round %s: settlement failed%s: %s', round_id,
                            ' (deterministic: not retried)' if final else '', reason,
                            extra=event(round_id, 'settlement'))
                self.store.update(round_id, settlement='failed', settle_reason=reason, settle_final=int(final))
            if not final and self._may_rerun(phases, round_.settle_attempts):
                self._settle(round_, rerun='settled' in phases)

    def _delivery_pending(self, round_: Round) -> bool:
        """Whether the round's flexibility round may still clear (open, closed, clearing, or failed
        with a rerun to come): its settlement then waits, so the activations are delivered in it."""
        flex = self.store.flex_round_of(round_.round_id)
        if flex is None or round_.settlement in ('settling', 'settled'):
            return False
        # as the nodes' flexround.delivery_decision waits, but an open or closed one past its gate is this
        # broker's to clear (the nodes would abandon it) and a failed one waits while reruns are left here
        return flex.state in ('open', 'closed', 'clearing') or (
            flex.state == 'failed' and not flex.final and flex.attempts < self.config.max_attempts)

    def _baselines_pending(self, round_: Round) -> bool:
        """Whether a flexibility round's energy round has not cleared yet (nor failed for good): its
        gate then waits, as the nodes refuse to clear it before (their orders are the baselines)."""
        energy = self.store.get(round_.energy_round) if round_.energy_round else None
        return energy is not None and energy.state != 'cleared' and not (energy.state == 'failed' and energy.final)

    def _may_rerun(self, phases: Sequence[str | None], attempts: int) -> bool:
        """Every node answered and serves, and attempts are left."""
        return None not in phases and all(self.nodes.serving()) and attempts < self.config.max_attempts

    def _settle(self, round_: Round, rerun: bool) -> None:
        self.store.update(round_.round_id, settlement='settling', settle_attempts=round_.settle_attempts + 1)
        for i, (_, error) in enumerate(self.nodes.call('SettleRound', market_pb2.RoundRef(
                round_id=round_.round_id, rerun=rerun))):
            if error:
                log.warning('round %s: node %d did not settle: %s', round_.round_id, i, error)
        log.info('round %s: readings closed, settling (attempt %d)', round_.round_id, round_.settle_attempts + 1,
                 extra=event(round_.round_id, 'settlement'))

    def _close(self, round_: Round, rerun: bool) -> None:
        self.store.update(round_.round_id, state='clearing', attempts=round_.attempts + 1)
        for i, (_, error) in enumerate(self.nodes.call('CloseRound', market_pb2.RoundRef(
                round_id=round_.round_id, rerun=rerun))):
            if error:
                log.warning('round %s: node %d did not close: %s', round_.round_id, i, error)
        log.info('round %s: gate closed, clearing (attempt %d)', round_.round_id, round_.attempts + 1,
                 extra=event(round_.round_id, 'clearing'))

    def _collect(self, round_: Round, settlement: bool = False) -> None:
        """Publish the body every node signed: the public results, or the public settlement."""
        method, what = ('NodeSettlementResults', 'settlement') if settlement else ('NodePublicResults', 'results')
        phase, reason_key = ('settlement', 'settle_reason') if settlement else ('state', 'reason')
        replies = self.nodes.call(method, market_pb2.RoundRef(round_id=round_.round_id))
        bodies = {r.body for r, _ in replies if r is not None}
        if len(bodies) != 1 or any(r is None for r, _ in replies):
            self.store.update(round_.round_id, **{phase: 'failed', reason_key: f'nodes disagree on the public {what}'})
            return
        body = bodies.pop()
        signatures = {s.node_index: s.signature for r, _ in replies for s in r.signatures}
        try:
            verify_public(body, signatures, self.verify_keys, SETTLEMENT_DOMAIN if settlement else PUBLIC_DOMAIN)
        except Tampered as exc:
            self.store.update(round_.round_id, **{phase: 'failed', reason_key: str(exc)})
            return
        (self.store.publish_settlement if settlement else self.store.publish)(round_.round_id, body, signatures)
        log.info('round %s: public %s published (signed by %d nodes)', round_.round_id, what, len(signatures),
                 extra=event(round_.round_id, 'settlement' if settlement else 'clearing'))



def failure_reason(replies: Sequence[Reply], phases: Sequence[str | None], failed: str, reason_field: str) -> str:
    """Why a phase failed, from the nodes' replies: unreachable nodes and failed nodes' reasons.

    Args:
        replies: every node's (reply, error).
        phases: every node's phase (None: no reply).
        failed: the phase of a failed node ('failed', 'settle_failed').
        reason_field: the reply field with its reason.

    Returns:
        The distinct reasons joined by '; ' ('' if none).
    """
    reasons = [f'node {i} unreachable ({error})' if r is None else getattr(r, reason_field)
               for i, (r, error) in enumerate(replies) if r is None or phases[i] == failed]
    return '; '.join(dict.fromkeys(x for x in reasons if x))



def operators_only(operators: Sequence[str]) -> ClientNames:
    """The interceptor that keeps opening and closing rounds for the operators' certificates."""
    allowed = frozenset(operators)
    return ClientNames({f'/mpc_market.rpc.Broker/{m}': allowed.__contains__ for m in ('OpenRound', 'CloseRound')},
                       'broker', lambda method, name: f'{name or "an anonymous client"} may not open or close rounds')


def serve(config: BrokerConfig) -> int:
    """Run the broker until SIGTERM or SIGINT.

    Args:
        config: the broker's configuration.

    Returns:
        0, the exit status.
    """
    credentials = tls.server_credentials(config.keys, 'broker', 'broker')
    check_free('broker', config.listen)  # before any state, the operator page or a call to the nodes
    make_private_dir(config.data_dir)
    store = BrokerStore(os.path.join(config.data_dir, 'broker.db'))
    metrics.set_role('broker')
    metrics.watch_store(store, rounds=True)
    nodes = Nodes(config)
    scheduler = Scheduler(config, store, nodes)
    page = None
    if config.http:
        from . import webview
        page = webview.start(config.http, webview.OperatorView(store, nodes), metrics=metrics.metrics_text)
        log.info('operator page on http://%s/ (read-only, public information)', config.http)

    def add_servicers(server: grpc.Server) -> list[str]:
        market_pb2_grpc.add_BrokerServicer_to_server(BrokerService(config, store, nodes), server)
        return ['mpc_market.rpc.Broker']
    try:
        run_server('broker', config.listen, credentials, add_servicers, 8,
                   f'broker listening on {config.listen} (mutual TLS), {len(config.nodes)} nodes',
                   interceptors=[operators_only(config.operators)], tick=scheduler.step, tick_s=config.poll_s,
                   metrics_address=config.metrics)
    finally:
        if page is not None:
            page.shutdown()
        nodes.close()
        store.close()
    return 0

"""``mpc-market broker --config BROKER.toml``: opens and closes rounds and publishes their results.

The broker holds no secret: it never receives an order, a share, an envelope or a reading, only
round parameters and the public results, which it accepts when every node signed the same
body. Its state (rounds, public results) is in SQLite, so it can be killed and restarted at any
time; the nodes keep the orders and the round state, and every broker request is idempotent.

A scheduler closes each round at its gate closure (CloseRound at every node), watches the
nodes, collects the signed public results, and re-runs a failed clearing once every node is
back (up to max_attempts), keeping the failure reason visible meanwhile.
"""

import json
import logging
import os
from concurrent import futures

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ..common.files import make_private_dir
from ..common.keys import load_node_verify_keys, node_name
from ..common.names import NAME_RULE, is_name
from ..rpc import market_pb2, market_pb2_grpc
from . import tls
from .calendar import due
from .messages import public_result_set, verify_public
from .server import ClientNames, run_server
from .store import SqliteStore, now_ms

log = logging.getLogger('mpc_market.broker')



STATE = market_pb2.RoundState



SCHEMA = """
CREATE TABLE IF NOT EXISTS rounds (
    round_id TEXT PRIMARY KEY, slots TEXT NOT NULL, gate_closure_ms INTEGER NOT NULL,
    market_toml TEXT NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0, created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS public_results (
    round_id TEXT PRIMARY KEY, body TEXT NOT NULL, signatures TEXT NOT NULL);
"""



class BrokerStore(SqliteStore):
    """Rounds and public results (SQLite, WAL): everything the broker knows."""

    schema = SCHEMA

    def add(self, spec):
        with self._transaction() as db:
            db.execute('INSERT OR IGNORE INTO rounds VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
                       (spec.round_id, json.dumps(sorted(spec.slots)), spec.gate_closure_unix_ms, spec.market_toml,
                        'open', '', 0, now_ms()))

    def get(self, round_id):
        """A round by id; without an id the latest open round, else the latest round."""
        query = ('SELECT round_id, slots, gate_closure_ms, market_toml, state, reason, attempts FROM rounds '
                 + ('WHERE round_id = ?' if round_id else "ORDER BY state = 'open' DESC, created_ms DESC LIMIT 1"))
        row = self._db.execute(query, (round_id,) if round_id else ()).fetchone()
        if row is None:
            return None
        return {'round_id': row[0], 'slots': json.loads(row[1]), 'gate_closure_ms': row[2], 'market_toml': row[3],
                'state': row[4], 'reason': row[5], 'attempts': row[6]}

    def rounds(self):
        """Every round, oldest first (the operator page)."""
        with self._lock:
            ids = [r[0] for r in self._db.execute('SELECT round_id FROM rounds ORDER BY created_ms').fetchall()]
        return [self.get(round_id) for round_id in ids]

    def pending(self):
        rows = self._db.execute("SELECT round_id FROM rounds WHERE state IN ('open', 'clearing', 'failed') "
                                'ORDER BY created_ms').fetchall()
        return [r[0] for r in rows]

    def update(self, round_id, **fields):
        with self._transaction() as db:
            for key, value in fields.items():
                assert key in ('state', 'reason', 'attempts', 'gate_closure_ms'), key
                db.execute(f'UPDATE rounds SET {key} = ? WHERE round_id = ?', (value, round_id))

    def publish(self, round_id, body, signatures):
        with self._transaction() as db:
            db.execute('INSERT OR REPLACE INTO public_results VALUES (?, ?, ?)',
                       (round_id, body, json.dumps({str(i): s.hex() for i, s in signatures.items()})))
            db.execute("UPDATE rounds SET state = 'cleared', reason = '' WHERE round_id = ?", (round_id,))

    def public(self, round_id):
        with self._lock:
            row = self._db.execute('SELECT body, signatures FROM public_results WHERE round_id = ?',
                                   (round_id,)).fetchone()
        return None if row is None else (row[0], {int(i): bytes.fromhex(s) for i, s in json.loads(row[1]).items()})



class Nodes:
    """The broker's connections to the market nodes (broker certificate, names pinned)."""

    def __init__(self, config):
        credentials = tls.client_credentials(config.keys, 'broker', 'broker')
        self.addresses = config.nodes
        self.channels = [tls.secure_channel(a, credentials, node_name(i)) for i, a in enumerate(config.nodes)]
        self.stubs = [market_pb2_grpc.NodeStub(c) for c in self.channels]
        self.health = [health_pb2_grpc.HealthStub(c) for c in self.channels]

    def close(self):
        for channel in self.channels:
            channel.close()

    def call(self, method, request, timeout=10):
        """[(reply or None, error or None)] of method at every node, in parallel."""
        def one(stub):
            try:
                return getattr(stub, method)(request, timeout=timeout), None
            except grpc.RpcError as exc:
                return None, f'{exc.code().name}: {exc.details()}'
        with futures.ThreadPoolExecutor(len(self.stubs)) as pool:
            return list(pool.map(one, self.stubs))

    def serving(self):
        def one(stub):
            try:
                return stub.Check(health_pb2.HealthCheckRequest(service=''), timeout=3).status == \
                    health_pb2.HealthCheckResponse.SERVING
            except grpc.RpcError:
                return False
        with futures.ThreadPoolExecutor(len(self.health)) as pool:
            return list(pool.map(one, self.health))



def open_at_nodes(store, nodes, spec):
    """Open a round at every node, then record it; '' on success, else why not. Nodes that did open
    it keep it idempotently, so a retry (an operator's, or the calendar's next tick) opens it everywhere."""
    failures = [f'node {i} ({nodes.addresses[i]}): {error}' for i, (_, error) in enumerate(nodes.call('OpenRound', spec))
                if error]
    if failures:
        return '; '.join(failures)
    store.add(spec)
    log.info('round %s opened: %d slots, gate closure %d', spec.round_id, len(spec.slots), spec.gate_closure_unix_ms)
    return ''



class BrokerService(market_pb2_grpc.BrokerServicer):
    def __init__(self, config, store, nodes):
        self.config = config
        self.store = store
        self.nodes = nodes

    def _state(self, round_, counts=True):
        """The round as clients see it; the live accepted count only for operators (counts)."""
        accepted = [r.accepted for r, _ in self.nodes.call('RoundStatus', market_pb2.RoundRef(round_id=round_['round_id']),
                                                           timeout=3) if r is not None] if counts else []
        return market_pb2.RoundState(round_id=round_['round_id'], state=getattr(STATE, round_['state'].upper()),
                                     reason=round_['reason'], gate_closure_unix_ms=round_['gate_closure_ms'],
                                     accepted=min(accepted) if accepted else 0, slots=round_['slots'],
                                     market_toml=round_['market_toml'], node_addresses=self.nodes.addresses,
                                     attempts=round_['attempts'])

    def OpenRound(self, request, context):
        if not is_name(request.round_id):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f'broker: round id is not {NAME_RULE}')
        if request.gate_closure_unix_ms <= now_ms():
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, 'broker: the gate closure is in the past')
        existing = self.store.get(request.round_id) if request.round_id else None
        if existing is not None:
            if (existing['slots'], existing['gate_closure_ms'], existing['market_toml']) == (
                    sorted(request.slots), request.gate_closure_unix_ms, request.market_toml):
                return self._state(existing)  # idempotent: the same request retried
            context.abort(grpc.StatusCode.ALREADY_EXISTS, f'broker: round {request.round_id} exists already '
                          f'({existing["state"]}); open a new round id')
        failures = open_at_nodes(self.store, self.nodes, request)
        if failures:
            context.abort(grpc.StatusCode.UNAVAILABLE, 'broker: round not opened: ' + failures)
        return self._state(self.store.get(request.round_id))

    def CloseRound(self, request, context):
        """Move the gate closure to now; the scheduler closes the round at the nodes."""
        round_ = self._round(request.round_id, context)
        if round_['state'] == 'open' and round_['gate_closure_ms'] > now_ms():
            self.store.update(round_['round_id'], gate_closure_ms=now_ms())
        return self._state(self.store.get(round_['round_id']))

    def RoundStatus(self, request, context):
        return self._state(self._round(request.round_id, context),
                           counts=tls.client_name(context) in self.config.operators)

    def PublicResults(self, request, context):
        round_ = self._round(request.round_id, context)
        stored = self.store.public(round_['round_id'])
        if stored is None:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f'broker: round {round_["round_id"]} is '
                          f'{round_["state"]}' + (f' ({round_["reason"]})' if round_['reason'] else ''))
        return public_result_set(round_['round_id'], *stored)

    def ListRounds(self, request, context):
        return market_pb2.RoundList(rounds=[self._state(r, counts=False) for r in self.store.rounds()])

    def _round(self, round_id, context):
        round_ = self.store.get(round_id)
        if round_ is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f'broker: unknown round {round_id!r}' if round_id
                          else 'broker: no open round')
        return round_



class Scheduler:
    """Gate closure, progress watching, result collection and re-runs, one pass per poll."""

    def __init__(self, config, store, nodes):
        self.config, self.store, self.nodes = config, store, nodes
        self.verify_keys = load_node_verify_keys(config.keys, len(config.nodes))

    def step(self):
        if self.config.calendar is not None:
            self._open_calendar_rounds()
        for round_id in self.store.pending():
            try:
                self._advance(self.store.get(round_id))
            except Exception:  # noqa: BLE001 - keep scheduling the other rounds
                log.exception('round %s: scheduler error', round_id)

    def _open_calendar_rounds(self):
        """Open the calendar's rounds that are due and not yet known (ids follow from their times)."""
        for plan in due(self.config.calendar, now_ms()):
            if self.store.get(plan.round_id) is not None:
                continue
            spec = market_pb2.RoundSpec(round_id=plan.round_id, slots=plan.slots, gate_closure_unix_ms=plan.gate_closure_ms,
                                        market_toml=self.config.calendar.market_toml())
            failures = open_at_nodes(self.store, self.nodes, spec)
            if failures:
                log.warning('calendar round %s not opened yet: %s', plan.round_id, failures)

    def _advance(self, round_):
        round_id = round_['round_id']
        if round_['state'] == 'open':
            if round_['gate_closure_ms'] > now_ms():
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
            reasons = [f'node {i} unreachable ({error})' if r is None else r.reason
                       for i, (r, error) in enumerate(replies) if r is None or states[i] == 'failed']
            reason = '; '.join(dict.fromkeys(x for x in reasons if x)) or 'clearing did not complete at every node'
            if round_['state'] != 'failed' or round_['reason'] != reason:
                log.warning('round %s failed: %s', round_id, reason)
                self.store.update(round_id, state='failed', reason=reason)
            if None not in states and all(self.nodes.serving()) and round_['attempts'] < self.config.max_attempts:
                self._close(round_, rerun='cleared' in states)

    def _close(self, round_, rerun):
        self.store.update(round_['round_id'], state='clearing', attempts=round_['attempts'] + 1)
        for i, (_, error) in enumerate(self.nodes.call('CloseRound', market_pb2.RoundRef(
                round_id=round_['round_id'], rerun=rerun))):
            if error:
                log.warning('round %s: node %d did not close: %s', round_['round_id'], i, error)
        log.info('round %s: gate closed, clearing (attempt %d)', round_['round_id'], round_['attempts'] + 1)

    def _collect(self, round_):
        replies = self.nodes.call('NodePublicResults', market_pb2.RoundRef(round_id=round_['round_id']))
        bodies = {r.body for r, _ in replies if r is not None}
        if len(bodies) != 1 or any(r is None for r, _ in replies):
            self.store.update(round_['round_id'], state='failed', reason='nodes disagree on the public results')
            return
        body = bodies.pop()
        signatures = {s.node_index: s.signature for r, _ in replies for s in r.signatures}
        try:
            verify_public(body, signatures, self.verify_keys)
        except ValueError as exc:
            self.store.update(round_['round_id'], state='failed', reason=str(exc))
            return
        self.store.publish(round_['round_id'], body, signatures)
        log.info('round %s: public results published (signed by %d nodes)', round_['round_id'], len(signatures))



def operators_only(operators):
    """The interceptor that keeps opening and closing rounds for the operators' certificates."""
    allowed = frozenset(operators)
    return ClientNames({f'/mpc_market.rpc.Broker/{m}': allowed.__contains__ for m in ('OpenRound', 'CloseRound')},
                       'broker', lambda method, name: f'{name or "an anonymous client"} may not open or close rounds')


def serve(config):
    """Run the broker until SIGTERM or SIGINT."""
    credentials = tls.server_credentials(config.keys, 'broker', 'broker')
    make_private_dir(config.data_dir)
    store = BrokerStore(os.path.join(config.data_dir, 'broker.db'))
    nodes = Nodes(config)
    scheduler = Scheduler(config, store, nodes)
    page = None
    if config.http:
        from . import webview
        page = webview.start(config.http, webview.OperatorView(store, nodes))
        log.info('operator page on http://%s/ (read-only, public information)', config.http)

    def add_servicers(server):
        market_pb2_grpc.add_BrokerServicer_to_server(BrokerService(config, store, nodes), server)
        return ['mpc_market.rpc.Broker']
    try:
        run_server('broker', config.listen, credentials, add_servicers, 8,
                   f'broker listening on {config.listen} (mutual TLS), {len(config.nodes)} nodes',
                   interceptors=[operators_only(config.operators)], tick=scheduler.step, tick_s=config.poll_s)
    finally:
        if page is not None:
            page.shutdown()
        nodes.close()
        store.close()
    return 0

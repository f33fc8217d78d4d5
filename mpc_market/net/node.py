"""``mpc-market node --config NODE.toml``: one market node = gRPC server (mutual TLS) + MPyC party.

Participants submit share packages (mpc_market.net.node_intake); the broker opens rounds and, at gate
closure, tells every node to clear (only a client whose certificate is named ``broker`` may).
Clearing runs in a child MPyC process over TLS (mpc_market.net.round_clearing) while this process
keeps answering; results are stored before the round is reported cleared. Each participant
fetches only its own result shares, with a request signed by its own key. A node restarted
after a crash fails the interrupted round, and the broker re-runs it from the stored shares.

After clearing, a round with a readings deadline takes signed meter-reading packages until the
deadline; then the broker tells every node to settle (mpc_market.net.round_settlement): a second
MPC session over the stored order and reading shares. Each participant then fetches its
settlement shares, and the retailer (its own key and TLS certificate) its view per slot.
"""

import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Mapping

import grpc
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

from ..common.errors import (
    InputError,
    Malformed,
    NotAuthenticated,
    NotFound,
    NotPermitted,
    Overloaded,
    Refused,
    Replayed,
    WrongPhase,
)
from ..common.files import make_private_dir
from ..common.keys import load_agreement_keys, load_node_signing_key, load_registry
from ..common.logs import event
from ..common.names import check_round_id
from ..market.config import parse_config
from ..rpc import market_pb2, market_pb2_grpc
from . import metrics, sealed, tls
from .admission import Admission
from .config import NodeConfig
from .flexround import delivery_decision, energy_round_problem
from .messages import RESULT_KINDS, result_shares_bytes, results_request_bytes, seal_context, spec_problem
from .node_intake import NodeService, RateLimiter, broker_only
from .round_clearing import ClearingFailed, clear_round
from .round_settlement import settle_round
from .server import abort, check_free, run_server
from .store import Round, Store, now_ms

FRESHNESS_MS = 5 * 60 * 1000



NONCE_RE = re.compile(r'[0-9a-f]{32}')



_UNKNOWN_PARTICIPANT = ed25519.Ed25519PrivateKey.generate().public_key()






WORKERS = 16



RESERVED_WORKERS = 4  # never taken by submissions: round control, status and health always answer



log = logging.getLogger('mpc_market.node')



class MarketNodeServer(NodeService):
    """Submission service plus round control (broker only), results and the clearing runs."""

    def __init__(self, config: NodeConfig, store: Store, registry: Mapping[str, ed25519.Ed25519PublicKey],
                 signing_key: ed25519.Ed25519PrivateKey, agreement_keys: Mapping[str, x25519.X25519PublicKey]):
        super().__init__(config.index, store, registry, signing_key,
                         limiter=RateLimiter(config.rate_per_s, config.burst),
                         admission=Admission(WORKERS, reserved=RESERVED_WORKERS), nodes=len(config.mpc))
        self.agreement_keys = agreement_keys  # participant -> X25519 key its result shares are sealed to
        self.config = config
        self._clearing: str | None = None  # round id of the clearing or settlement run in progress (one MPC port)
        self._lock = threading.Lock()

    # -- round control (the broker only: see node_intake.broker_only) ------------------------------
    def OpenRound(self, request: market_pb2.RoundSpec, context: grpc.ServicerContext) -> market_pb2.RoundState:
        """Open a round (as NodeService.OpenRound) once its specification is one this node signs."""
        try:
            parse_config(f'round {request.round_id}', request.market_toml)
        except InputError as exc:
            abort(context, Malformed(f'market: {exc}'), f'node {self.index}')
        try:
            check_round_id(request.round_id)
        except Malformed as exc:
            abort(context, exc, f'node {self.index}')
        if not request.slots or len(set(request.slots)) != len(request.slots):
            abort(context, Malformed('a round needs an id and distinct slots'), f'node {self.index}')
        problem = spec_problem(request, self.nodes)
        if not problem and request.energy_round:  # the energy round as this node holds it, not as the broker says
            with self._lock:  # no settlement of that round starts while the binding is checked and stored
                problem = energy_round_problem(request.round_id, request.slots, request.market_toml,
                                               request.gate_closure_unix_ms, self._round_or_none(request.energy_round),
                                               self.store.flex_round_of(request.energy_round))
                if not problem:
                    return super().OpenRound(request, context)
        if problem:
            abort(context, Malformed(problem), f'node {self.index}')
        return super().OpenRound(request, context)

    def _delivered_already(self, round_: Round) -> bool:
        """Whether a flexibility round's energy round is settling or settled: its published
        activations are in that settlement, so no rerun may fail or change them."""
        energy = self._round_or_none(round_.energy_round) if round_.energy_round else None
        return energy is not None and energy.settlement in ('settling', 'settled')

    def _round_or_none(self, round_id: str) -> Round | None:
        """A round of this node's store, or None."""
        try:
            return self.store.round(round_id)
        except NotFound:
            return None

    def CloseRound(self, request: market_pb2.RoundRef, context: grpc.ServicerContext) -> market_pb2.RoundState:
        """Gate closure: stop accepting and clear (again, after a failure or when rerun is set)."""
        try:
            round_ = self.store.round(request.round_id)
        except Refused as exc:
            abort(context, exc, f'node {self.index}')
        with self._lock:
            if round_.state == 'cleared' and self._delivered_already(round_):  # its activations stand
                return self.RoundStatus(market_pb2.RoundRef(round_id=request.round_id), context)
            if self._clearing is None:
                started = self.store.begin_clearing(request.round_id, rerun=request.rerun)
                if started is not None:
                    self._clearing = started.round_id
                    threading.Thread(target=self._run, args=(started, 'clearing'), daemon=True).start()
            elif round_.state == 'open':  # another round is clearing: close the gate now, clear later
                self.store.set_state(request.round_id, 'closed')
        return self.RoundStatus(market_pb2.RoundRef(round_id=request.round_id), context)

    def SettleRound(self, request: market_pb2.RoundRef, context: grpc.ServicerContext) -> market_pb2.RoundState:
        """The readings deadline passed: settle (again, after a failure or when rerun is set)."""
        with self._lock:
            flex = self.store.flex_round_of(request.round_id)
            decision = delivery_decision(flex, now_ms())
            if flex is not None and decision == 'wait':
                abort(context, WrongPhase(f'round {request.round_id} waits for its flexibility round {flex.round_id} '
                                          f'({flex.state})'), f'node {self.index}')
            if flex is not None and decision == 'abandon' and self._clearing is None:
                self.store.set_state(flex.round_id, 'failed', f'never cleared before energy round '
                                     f'{request.round_id} settled', final=True)
            if self._clearing is None:
                try:
                    started = self.store.begin_settling(request.round_id, rerun=request.rerun)
                except Refused as exc:
                    abort(context, exc, f'node {self.index}')
                if started is not None:
                    self._clearing = started.round_id
                    threading.Thread(target=self._run, args=(started, 'settlement'), daemon=True).start()
        return self.RoundStatus(market_pb2.RoundRef(round_id=request.round_id), context)

    def _run(self, round_: Round, phase: str) -> None:
        """One clearing or settlement run (its own thread); the round never stays mid-phase."""
        run, fail, attempt = ((clear_round, self.store.set_state, round_.attempts) if phase == 'clearing' else
                              (settle_round, self.store.set_settlement, round_.settle_attempts))
        started = time.perf_counter()
        log.info('round %s: %s (attempt %d)', round_.round_id, phase, attempt, extra=event(round_.round_id, phase))
        try:
            timings = run(self.store, round_, self.config, self.signing_key)
            tls = 'MPyC over TLS' if timings.pop('mpc_tls') else 'MPyC WITHOUT TLS'
            sent, peak = int(timings.pop('bytes_sent')), timings.pop('peak_rss_mb')  # a count, as RunFigures has it
            log.info('round %s: %s done in %.2f s, %s, %d bytes sent to the other nodes, peak %.1f MB (phases: %s)',
                     round_.round_id, phase, time.perf_counter() - started, tls, sent, peak,
                     ', '.join(f'{k} {v:.2f} s' for k, v in timings.items()), extra=event(round_.round_id, phase))
            metrics.record_session(phase, 'done', time.perf_counter() - started, sent, peak)
        except ClearingFailed as exc:
            log.warning('round %s: %s failed%s: %s', round_.round_id, phase,
                        ' (deterministic: not retried)' if exc.final else '', exc, extra=event(round_.round_id, phase))
            metrics.record_session(phase, 'final_failure' if exc.final else 'failed', time.perf_counter() - started)
            fail(round_.round_id, 'failed', str(exc), final=exc.final)
        except Exception as exc:  # noqa: BLE001 - the round must not stay clearing or settling
            log.exception('round %s: internal error in %s (not retried)', round_.round_id, phase,
                          extra=event(round_.round_id, phase))
            metrics.record_session(phase, 'final_failure', time.perf_counter() - started)
            fail(round_.round_id, 'failed', f'node {self.index}: internal error: {type(exc).__name__}: {exc}',
                 final=True)
        finally:
            with self._lock:
                self._clearing = None

    def NodePublicResults(self, request: market_pb2.RoundRef,
                          context: grpc.ServicerContext) -> market_pb2.PublicResultSet:
        """This node's signed public results of a cleared round."""
        return self._signed_body(request.round_id, self.store.public_results(request.round_id), 'has no results',
                                 context)

    def NodeSettlementResults(self, request: market_pb2.RoundRef,
                              context: grpc.ServicerContext) -> market_pb2.PublicResultSet:
        """This node's signed public settlement of a settled round."""
        return self._signed_body(request.round_id, self.store.settlement_public(request.round_id), 'is not settled',
                                 context)

    def _signed_body(self, round_id: str, stored: tuple[str, bytes] | None, missing: str,
                     context: grpc.ServicerContext) -> market_pb2.PublicResultSet:
        """The PublicResultSet of this node's signed body (results or settlement)."""
        if stored is None:
            abort(context, WrongPhase(f'round {round_id!r} {missing} yet'), f'node {self.index}')
        body, signature = stored
        return market_pb2.PublicResultSet(round_id=round_id, body=body, signatures=[
            market_pb2.NodeSignature(node_index=self.index, signature=signature)])

    # -- a participant's own results ---------------------------------------------------------------
    def FetchResults(self, request: market_pb2.ResultsRequest,
                     context: grpc.ServicerContext) -> market_pb2.ResultShares:
        """sealed_results, for the client certificate of this call; a refusal aborts the call."""
        with self.admission.admit(context, 1, f'node {self.index}'):
            try:
                return self.sealed_results(request, tls.client_name(context))
            except Refused as exc:
                abort(context, exc, f'node {self.index}')

    def sealed_results(self, request: market_pb2.ResultsRequest, client_name: str = '') -> market_pb2.ResultShares:
        """A participant's own result shares of one kind, sealed to its X25519 key.

        The request is signed by the participant, names this node and a fresh nonce, and is
        answered once; every way it can fail authentication gets the same answer, so nobody
        learns who is registered.

        Args:
            request: the participant's signed request (kind: '' clearing, 'settlement', 'retailer',
                'delivery').
            client_name: the TLS client certificate's name (the retailer's view needs the retailer's).

        Returns:
            The sealed shares, signed by this node.

        Raises:
            NotAuthenticated: a bad or stale signature, another node, a malformed nonce or kind.
            NotPermitted: the retailer's view for another key or certificate.
            Overloaded: the participant's rate limit.
            Replayed: a used nonce.
            NotFound: no such round, or the participant took no part.
            WrongPhase: the round is not cleared (or not settled, for settlement and retailer shares).
        """
        public_key = self.registry.get(request.participant)
        signed = results_request_bytes(request.round_id, request.participant, request.node_index, request.nonce,
                                       request.unix_ms, request.kind)
        try:
            (public_key or _UNKNOWN_PARTICIPANT).verify(request.signature, signed)  # same work when unknown
            authentic = public_key is not None
        except InvalidSignature:
            authentic = False
        if (not authentic or request.node_index != self.index or not NONCE_RE.fullmatch(request.nonce)
                or abs(now_ms() - request.unix_ms) > FRESHNESS_MS or request.kind not in RESULT_KINDS):
            raise NotAuthenticated('results request not authenticated')
        if request.kind == 'retailer' and (request.participant != self.config.retailer
                                           or client_name != self.config.retailer):
            raise NotPermitted(f"the retailer's view is for the retailer's key and certificate "
                               f'({self.config.retailer!r}) only')
        if not self.limiter.allow(request.participant):
            raise Overloaded(f'rate limit for {request.participant}')
        if not self.store.use_request_nonce(request.participant, request.nonce):
            raise Replayed('results request replayed')
        round_ = self.store.round(request.round_id)
        status, shares = self._stored_results(round_, request.participant, request.kind)
        ephemeral, sealed_shares = sealed.seal(self.agreement_keys[request.participant], shares,
                                               seal_context(round_.round_id, request.participant, self.index, status,
                                                            request.nonce, request.kind))
        signature = self.signing_key.sign(result_shares_bytes(
            round_.round_id, request.participant, self.index, status, request.nonce,
            hashlib.sha256(ephemeral + sealed_shares).hexdigest(), request.kind))
        return market_pb2.ResultShares(round_id=round_.round_id, participant=request.participant,
                                       node_index=self.index, shares=sealed_shares, node_signature=signature,
                                       status=status, ephemeral_public=ephemeral, nonce=request.nonce,
                                       kind=request.kind)

    def _stored_results(self, round_: Round, participant: str, kind: str) -> tuple[str, bytes]:
        """(status, shares) of one kind; raises WrongPhase before they exist, NotFound for a non-taker."""
        if round_.state != 'cleared':
            raise WrongPhase(f'round {round_.round_id} is {round_.state}'
                             + (f' ({round_.reason})' if round_.reason else ''))
        if not kind:
            stored = self.store.results(round_.round_id, participant)
        elif round_.settlement != 'settled':
            raise WrongPhase(f'round {round_.round_id} is not settled'
                             + (f' ({round_.settle_reason})' if round_.settle_reason else ''))
        elif kind == 'retailer':
            shares = self.store.retailer_results(round_.round_id)
            stored = None if shares is None else ('retailer', shares)
        elif kind == 'delivery':
            stored = self.store.delivery_results(round_.round_id, participant)
        else:
            stored = self.store.settlement_results(round_.round_id, participant)
        if stored is None:
            raise NotFound(f'{participant} took no part in round {round_.round_id}')
        return stored



def serve(config: NodeConfig) -> int:
    """Run the node until SIGTERM or SIGINT.

    Args:
        config: the node's NODE.toml.

    Returns:
        0, the exit status.

    Raises:
        KeyFileError: its keys or registry cannot be read.
        OSError: it cannot listen on its address (taken: see server.check_free).
    """
    credentials = tls.server_credentials(config.keys, 'nodes', f'node{config.index}')  # keys before any state
    # a second node on a taken port must not fail the running node's rounds (fail_interrupted)
    check_free(f'node {config.index}', config.listen)
    make_private_dir(config.data_dir)
    store = Store(os.path.join(config.data_dir, 'node.db'))
    metrics.set_role('node')
    metrics.watch_store(store, rounds=True)
    store.fail_interrupted(f'node {config.index} restarted during clearing')
    registry = load_registry(os.path.join(config.keys, 'registry.json'))
    servicer = MarketNodeServer(config, store, registry, load_node_signing_key(config.keys, config.index),
                                load_agreement_keys(os.path.join(config.keys, 'registry.json')))

    def add_servicers(server: grpc.Server) -> list[str]:
        market_pb2_grpc.add_NodeServicer_to_server(servicer, server)
        return ['mpc_market.rpc.Node']
    try:
        run_server(f'node {config.index}', config.listen, credentials, add_servicers, WORKERS,
                   f'node {config.index} listening on {config.listen} (mutual TLS), MPyC party at '
                   f'{config.mpc[config.index]}, {len(registry)} registered participants',
                   interceptors=[broker_only(config.index)], metrics_address=config.metrics)
    finally:
        store.close()
    return 0

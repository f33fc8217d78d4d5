"""A market node's gRPC submission service: authenticate, check, store durably, sign a receipt.

Order of work per submission: size limit, envelope signature (authentication before any other
work), per-participant rate limit (token bucket, so forged submissions cannot use up an honest
participant's quota), round, replay, package hash, share format; then the store commits, and only then the node
answers with a receipt signed by its Ed25519 key. The clearing itself runs over the stored
packages (a later step); at clearing, nodes include a participant only if all of them hold the
same envelope (nonce), so a submission that some node missed never half-counts.
"""

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import cast

import grpc
from cryptography.hazmat.primitives.asymmetric import ed25519

from ..common.errors import Overloaded, Refused, TooLarge
from ..market.book import ReadingLayout
from ..market.config import parse_config
from ..mpc import field as ff
from ..rpc import market_pb2, market_pb2_grpc
from . import messages, metrics
from .admission import Admission
from .flexround import offer_layout
from .messages import Envelope, RoundParams, receipt_bytes
from .server import ClientNames, abort, status_of
from .store import Round, Store

MAX_PACKAGE_BYTES = 64 << 20



STATUS_CLIENT = 'broker'



class RateLimiter:
    """Token bucket per participant: rate per second, burst tokens."""

    def __init__(self, rate: float = 5.0, burst: float = 20):
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at monotonic time)
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        """Whether key may submit now (it then spends a token)."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1:
                self._buckets[key] = (tokens, now)
                return False
            self._buckets[key] = (tokens - 1, now)
            return True



def check_package(package: bytes, expected_values: int) -> None:
    """Check that a package is expected_values field elements as little-endian 32-bit limbs (4 each), < p.

    Args:
        package: the package.
        expected_values: how many field elements it must hold.

    Raises:
        EnvelopeError: another size, or a share that is no field element.
    """
    if len(package) != 16 * expected_values:
        raise messages.EnvelopeError(f'malformed package: {len(package)} bytes, expected {16 * expected_values}')
    # a share is < 2^MODULUS_BITS: the top byte of every top limb (little-endian) is below TOP_BYTE_LIMIT;
    # a bytes slice and max() run in C, much faster than numpy on one small package
    if max(package[12 * expected_values + 3::4], default=0) >= TOP_BYTE_LIMIT:
        raise messages.EnvelopeError('malformed package: a share is not a field element')


TOP_BYTE_LIMIT = 1 << (ff.MODULUS_BITS - 96 - 24)  # 0x80 for 2^127 - 1



def package_values(round_: Round, kind: str) -> int:
    """Field elements in one participant's package for this round: slots x vector width.

    Args:
        round_: the round.
        kind: 'order' or 'readings'.

    Returns:
        The number of field elements.

    Raises:
        InputError: the round's market text does not parse (it did when the round opened).
    """
    if kind == 'order':
        return len(round_.slots) * offer_layout(round_).width
    config = parse_config(f'round {round_.round_id}', round_.market_toml)
    return len(round_.slots) * ReadingLayout.for_config(config).width



class NodeService(market_pb2_grpc.NodeServicer):
    """Submission side of a market node (round control and clearing are driven separately)."""

    def __init__(self, index: int, store: Store, registry: Mapping[str, ed25519.Ed25519PublicKey],
                 signing_key: ed25519.Ed25519PrivateKey,
                 package_values: Callable[[Round, str], int] = package_values, limiter: RateLimiter | None = None,
                 admission: Admission | None = None, nodes: int = 3):
        self.index = index
        self.nodes = nodes  # m: every round's parameters name it, and envelopes share among exactly m
        self.admission = admission or Admission(workers=4, reserved=1)  # per client certificate, before any work
        self.store = store
        self.registry = registry
        self.signing_key = signing_key
        self.package_values = package_values  # (round, kind) -> number of field elements per package
        self.limiter = limiter or RateLimiter()
        # (round id, kind) -> package values: the round's market is parsed once
        self._sizes: dict[tuple[str, str], int] = {}
        # round id -> (RoundParams, this node's signature): a round's parameters never change
        self._params: dict[str, tuple[RoundParams, bytes]] = {}

    def _expected_values(self, round_: Round, kind: str) -> int:
        key = (round_.round_id, kind)
        if key not in self._sizes:
            self._sizes[key] = self.package_values(round_, kind)
        return self._sizes[key]

    def signed_params(self, round_: Round) -> tuple[RoundParams, bytes]:
        """(RoundParams, this node's signature of them) of a stored round."""
        if round_.round_id not in self._params:
            params = messages.params_of_state(round_, self.nodes)
            self._params[round_.round_id] = (params, self.signing_key.sign(params.canonical()))
        return self._params[round_.round_id]

    def _check(self, request: market_pb2.Submission, kind: str, rounds: dict[str, Round] | None = None) -> Envelope:
        """Every check before storing; returns the envelope. Raises Refused. rounds: a batch's cache
        of round lookups (one store read per round, not per item: reads wait on the commits)."""
        if len(request.package) > MAX_PACKAGE_BYTES:
            raise TooLarge('package too large')
        envelope = messages.Envelope.from_json(request.envelope, kind)
        if envelope.participant != request.participant or envelope.round_id != request.round_id:
            raise messages.EnvelopeError('envelope does not match the request')
        messages.authenticate(envelope, request.signature, self.registry)  # before any other work
        if not self.limiter.allow(request.participant):  # per authenticated participant
            raise Overloaded(f'rate limit for {request.participant}')
        if request.node_index != self.index:
            raise messages.EnvelopeError(f'package is for node {request.node_index}')
        rounds = {} if rounds is None else rounds
        if request.round_id not in rounds:
            rounds[request.round_id] = self.store.round(request.round_id)
        round_ = rounds[request.round_id]
        # a used nonce is refused by the store's commit (accept_many), in the same transaction
        messages.check(envelope, request.signature, self.registry, self.signed_params(round_)[0], self.index,
                       request.package, set(), authenticated=True)
        check_package(request.package, self._expected_values(round_, kind))
        return envelope

    def _receipt(self, request: market_pb2.Submission, envelope: Envelope, accepted_ms: int,
                 sign: bool = True) -> market_pb2.Receipt:
        package_sha256 = envelope.package_hashes[self.index]
        signature = self.signing_key.sign(receipt_bytes(request.round_id, envelope.participant, envelope.nonce,
                                                        package_sha256, accepted_ms, self.index)) if sign else b''
        return market_pb2.Receipt(round_id=request.round_id, participant=envelope.participant, nonce=envelope.nonce,
                                  package_sha256=bytes.fromhex(package_sha256), accepted_unix_ms=accepted_ms,
                                  node_index=self.index, node_signature=signature)

    def _store_batch(self, checked: Sequence[tuple[market_pb2.Submission, Envelope]], kind: str, accepted_ms: int,
                     sign: bool = True) -> list[market_pb2.Receipt | Refused]:
        """Store checked (request, envelope) pairs in one commit; [receipt or Refused] in order. Without
        sign the receipts are unsigned: the batch's one signature covers them."""
        receipts = [self._receipt(r, e, accepted_ms, sign) for r, e in checked]
        errors = self.store.accept_many([(r.round_id, e.participant, kind, e.nonce, r.envelope, r.signature, r.package,
                                          receipt.node_signature, e.seq)
                                         for (r, e), receipt in zip(checked, receipts, strict=True)],
                                        at_ms=accepted_ms)
        return [receipt if error is None else error for receipt, error in zip(receipts, errors, strict=True)]

    def _submit(self, request: market_pb2.Submission, context: grpc.ServicerContext, kind: str) -> market_pb2.Receipt:
        outcome: market_pb2.Receipt | Refused
        try:
            outcome = self._store_batch([(request, self._check(request, kind))], kind, int(time.time() * 1000))[0]
        except Refused as exc:
            outcome = exc
        metrics.count_submissions(kind, [outcome], lambda exc: status_of(exc).name)
        if isinstance(outcome, Refused):
            abort(context, outcome, f'node {self.index}')
        return outcome

    def SubmitOrder(self, request: market_pb2.Submission, context: grpc.ServicerContext) -> market_pb2.Receipt:
        with self.admission.admit(context, 1, f'node {self.index}'):
            return self._submit(request, context, 'order')

    def SubmitReadings(self, request: market_pb2.Submission, context: grpc.ServicerContext) -> market_pb2.Receipt:
        with self.admission.admit(context, 1, f'node {self.index}'):
            return self._submit(request, context, 'readings')

    def SubmitBatch(self, request: market_pb2.SubmissionBatch,
                    context: grpc.ServicerContext) -> market_pb2.ReceiptBatch:
        """A representative's (or a meter operator's) batch: each package checked on its own, all
        accepted ones in one commit."""
        with self.admission.admit(context, len(request.orders), f'node {self.index}'):
            return self._submit_batch(request)

    def _submit_batch(self, request: market_pb2.SubmissionBatch) -> market_pb2.ReceiptBatch:
        kind = request.kind or 'order'
        outcomes: list[market_pb2.Receipt | Refused | None] = []
        checked: list[tuple[market_pb2.Submission, Envelope]] = []
        slots: list[int] = []  # the positions in outcomes of the checked items
        rounds: dict[str, Round] = {}
        for item in request.orders:
            try:
                if kind not in ('order', 'readings'):
                    raise messages.EnvelopeError(f'unknown kind {kind[:20]!r}')
                checked.append((item, self._check(item, kind, rounds)))
                slots.append(len(outcomes))
                outcomes.append(None)
            except Refused as exc:
                outcomes.append(exc)
        accepted_ms = int(time.time() * 1000)
        for position, outcome in zip(slots,
                                     self._store_batch(checked, kind, accepted_ms, sign=False) if checked else [],
                                     strict=True):
            outcomes[position] = outcome
        done = cast(list[market_pb2.Receipt | Refused], outcomes)  # the zip (strict) replaced every None
        if kind in ('order', 'readings'):
            metrics.count_submissions(kind, done, lambda exc: status_of(exc).name)
        accepted = [(o.round_id, o.participant, o.nonce, o.package_sha256.hex()) for o in done
                    if not isinstance(o, Refused)]
        return market_pb2.ReceiptBatch(outcomes=[
            market_pb2.BatchOutcome(receipt=o) if not isinstance(o, Refused) else
            market_pb2.BatchOutcome(error=f'node {self.index}: {o}', code=status_of(o).name) for o in done],
            accepted_unix_ms=accepted_ms, node_index=self.index,
            node_signature=self.signing_key.sign(messages.batch_receipt_bytes(self.index, accepted_ms, accepted)))

    def OpenRound(self, request: market_pb2.RoundSpec, context: grpc.ServicerContext) -> market_pb2.RoundState:
        self.store.open_round(request.round_id, list(request.slots), request.gate_closure_unix_ms, request.market_toml,
                              request.readings_open_unix_ms, request.readings_deadline_unix_ms, request.day,
                              request.flex_requests, request.energy_round)
        return self.RoundStatus(market_pb2.RoundRef(round_id=request.round_id), context)

    def RoundStatus(self, request: market_pb2.RoundRef, context: grpc.ServicerContext) -> market_pb2.RoundState:
        """A round's state and live accepted count: for the broker only (``broker_only``: the count
        would tell any client who is submitting when)."""
        try:
            round_ = self.store.round(request.round_id)
        except Refused as exc:
            abort(context, exc, f'node {self.index}')
        params, signature = self.signed_params(round_)
        return market_pb2.RoundState(params=params.to_json(), params_signatures=[
                                         market_pb2.NodeSignature(node_index=self.index, signature=signature)],
                                     round_id=round_.round_id,
                                     state=getattr(market_pb2.RoundState, round_.state.upper()),
                                     reason=round_.reason, gate_closure_unix_ms=round_.gate_closure_ms,
                                     accepted=self.store.count(round_.round_id), slots=round_.slots,
                                     market_toml=round_.market_toml, attempts=round_.attempts,
                                     settlement=messages.settlement_enum(round_.state, round_.readings_deadline_ms,
                                                                         round_.settlement),
                                     settle_reason=round_.settle_reason, readings_open_unix_ms=round_.readings_open_ms,
                                     readings_deadline_unix_ms=round_.readings_deadline_ms, day=round_.day,
                                     # a round without settlement takes no readings: no second count per status poll
                                     readings=self.store.count(round_.round_id, 'readings')
                                     if round_.readings_deadline_ms else 0,
                                     settle_attempts=round_.settle_attempts, final=round_.final,
                                     settle_final=round_.settle_final, flex_requests=round_.flex_requests,
                                     energy_round=round_.energy_round)


BROKER_ONLY = ('OpenRound', 'CloseRound', 'RoundStatus', 'SettleRound')


def broker_only(index: int) -> ClientNames:
    """The interceptor that keeps a node's round control and round status for the broker's certificate.

    Args:
        index: the node's index (named in refusals).

    Returns:
        The interceptor.
    """
    def refusal(method: str, name: str | None) -> str:
        what = 'round status' if method == 'RoundStatus' else 'round control'
        return f'{what} is for the broker, not {name or "an anonymous client"}'
    return ClientNames({f'/mpc_market.rpc.Node/{m}': (lambda name: name == STATUS_CLIENT) for m in BROKER_ONLY},
                       f'node {index}', refusal)

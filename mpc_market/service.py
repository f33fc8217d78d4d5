"""A market node's gRPC submission service: authenticate, check, store durably, sign a receipt.

Order of work per submission: size limit, envelope signature (authentication before any other
work), per-participant rate limit (token bucket, so forged submissions cannot use up an honest
participant's quota), round, replay, package hash, share format; then the store commits, and only then the node
answers with a receipt signed by its Ed25519 key. The clearing itself runs over the stored
packages (a later step); at clearing, nodes include a participant only if all of them hold the
same envelope (nonce), so a submission that some node missed never half-counts.
"""

import json
import threading
import time

import grpc
import numpy as np

from . import envelope as envelopes
from . import field as ff
from .encoding import Layout, ReadingLayout
from .market import parse_config
from .rpc import market_pb2, market_pb2_grpc
from .store import StoreError

RECEIPT_DOMAIN = b'mpc-market/receipt/v1\n'
MAX_PACKAGE_BYTES = 64 << 20


def receipt_bytes(round_id, participant, nonce, package_sha256, accepted_ms, node_index):
    body = json.dumps({'round_id': round_id, 'participant': participant, 'nonce': nonce,
                       'package_sha256': package_sha256, 'accepted_ms': accepted_ms, 'node_index': node_index},
                      sort_keys=True, separators=(',', ':'))
    return RECEIPT_DOMAIN + body.encode()


class RateLimiter:
    """Token bucket per participant: rate per second, burst tokens."""

    def __init__(self, rate=5.0, burst=20):
        self.rate, self.burst = rate, burst
        self._buckets = {}
        self._lock = threading.Lock()

    def allow(self, key):
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1:
                self._buckets[key] = (tokens, now)
                return False
            self._buckets[key] = (tokens - 1, now)
            return True


def check_package(package, expected_values):
    """A package is expected_values field elements as little-endian 32-bit limbs (4 each), < p."""
    if len(package) != 16 * expected_values:
        raise envelopes.EnvelopeError(f'malformed package: {len(package)} bytes, expected {16 * expected_values}')
    limbs = np.frombuffer(package, dtype='<u4').reshape(ff.LIMBS, -1)
    too_big = limbs[3] >> np.uint32(ff.MODULUS_BITS - 96)
    if too_big.any():
        raise envelopes.EnvelopeError('malformed package: a share is not a field element')


def package_values(round_, kind):
    """Field elements in one participant's package for this round: slots x vector width."""
    config = parse_config(f'round {round_.round_id}', round_.market_toml)
    layout = Layout.for_config(config) if kind == 'order' else ReadingLayout.for_config(config)
    return len(round_.slots) * layout.width


class NodeService(market_pb2_grpc.NodeServicer):
    """Submission side of a market node (round control and clearing are driven separately)."""

    def __init__(self, index, store, registry, signing_key, package_values=package_values, limiter=None):
        self.index = index
        self.store = store
        self.registry = registry
        self.signing_key = signing_key
        self.package_values = package_values  # (round, kind) -> number of field elements per package
        self.limiter = limiter or RateLimiter()

    def _submit(self, request, context, kind):
        def reject(code, message):
            context.abort(code, f'node {self.index}: {message}')
        if len(request.package) > MAX_PACKAGE_BYTES:
            reject(grpc.StatusCode.RESOURCE_EXHAUSTED, 'package too large')
        try:
            envelope = envelopes.Envelope.from_json(request.envelope)
            if envelope.participant != request.participant or envelope.round_id != request.round_id:
                raise envelopes.EnvelopeError('envelope does not match the request')
            envelopes.authenticate(envelope, request.signature, self.registry)  # before any other work
            if not self.limiter.allow(request.participant):  # per authenticated participant
                reject(grpc.StatusCode.RESOURCE_EXHAUSTED, f'rate limit for {request.participant}')
            if request.node_index != self.index:
                raise envelopes.EnvelopeError(f'package is for node {request.node_index}')
            round_ = self.store.round(request.round_id)
            seen = {(envelope.participant, envelope.nonce)} if self.store.nonce_used(envelope.participant,
                                                                                    envelope.nonce) else set()
            envelopes.check(envelope, request.signature, self.registry, round_.round_id, self.index,
                            request.package, seen)
            check_package(request.package, self.package_values(round_, kind))
            accepted_ms = int(time.time() * 1000)
            package_sha256 = envelope.package_hashes[self.index]
            receipt = receipt_bytes(round_.round_id, envelope.participant, envelope.nonce, package_sha256,
                                    accepted_ms, self.index)
            signature = self.signing_key.sign(receipt)
            self.store.accept(round_.round_id, envelope.participant, kind, envelope.nonce, request.envelope,
                              request.signature, request.package, signature, at_ms=accepted_ms)
        except envelopes.EnvelopeError as exc:
            code = {'not registered': grpc.StatusCode.UNAUTHENTICATED, 'bad signature': grpc.StatusCode.UNAUTHENTICATED,
                    'replayed': grpc.StatusCode.ALREADY_EXISTS, 'tampered': grpc.StatusCode.DATA_LOSS}
            reject(next((c for key, c in code.items() if key in str(exc)), grpc.StatusCode.INVALID_ARGUMENT), str(exc))
        except StoreError as exc:
            status = grpc.StatusCode.ALREADY_EXISTS if 'replayed' in str(exc) else grpc.StatusCode.FAILED_PRECONDITION
            reject(status, str(exc))
        return market_pb2.Receipt(round_id=round_.round_id, participant=envelope.participant, nonce=envelope.nonce,
                                  package_sha256=bytes.fromhex(package_sha256), accepted_unix_ms=accepted_ms,
                                  node_index=self.index, node_signature=signature)

    def SubmitOrder(self, request, context):
        return self._submit(request, context, 'order')

    def SubmitReadings(self, request, context):
        return self._submit(request, context, 'readings')

    def OpenRound(self, request, context):
        self.store.open_round(request.round_id, list(request.slots), request.gate_closure_unix_ms, request.market_toml)
        return self.RoundStatus(market_pb2.RoundRef(round_id=request.round_id), context)

    def RoundStatus(self, request, context):
        try:
            round_ = self.store.round(request.round_id)
        except StoreError as exc:
            context.abort(grpc.StatusCode.NOT_FOUND, f'node {self.index}: {exc}')
        return market_pb2.RoundState(round_id=round_.round_id, state=getattr(market_pb2.RoundState, round_.state.upper()),
                                     reason=round_.reason, gate_closure_unix_ms=round_.gate_closure_ms,
                                     accepted=self.store.count(round_.round_id))

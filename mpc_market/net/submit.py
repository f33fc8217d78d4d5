"""Participant side of a deployment: share orders client-side, sign, send each node its package.

A submitter (a participant, or a representative holding several participants' keys) encodes
each participant's orders for the round's slots, Shamir-shares them, signs one envelope over
the hashes of all m packages with that participant's own key, and sends node i only package i
over mutual TLS. The submission counts when every node returned a receipt whose signature
verifies with that node's signing key; otherwise the error names the node and it can be retried
(a retry is a fresh envelope that replaces the earlier one at every node that has it).
"""

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass

import grpc
import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from ..common.errors import MarketError
from ..common.keys import node_name
from ..mpc import field as ff
from ..rpc import market_pb2, market_pb2_grpc
from . import messages
from .admission import is_busy, retry_when_busy
from .messages import Envelope, receipt_bytes
from .tls import secure_channel

Prepared = list[tuple[Envelope, list[market_pb2.Submission]]]  # per participant: its envelope, a request per node


class SubmitError(MarketError):
    """A submission that did not reach every node; says which node and why."""


@dataclass
class NodeEndpoint:
    """A node to send packages to, and the key its receipts must be signed with."""
    index: int
    address: str                 # host:port
    signing_key: ed25519.Ed25519PublicKey  # of the node's receipts


def load_endpoints(keys_dir: str, addresses: Sequence[str]) -> list[NodeEndpoint]:
    """The nodes at addresses (node 0 first) with their receipt keys from keys_dir/nodes.

    Args:
        keys_dir: the key directory.
        addresses: every node's host:port.

    Returns:
        One endpoint per address.

    Raises:
        OSError: a node's public key file cannot be read.
        ValueError: it is no hex Ed25519 public key.
    """
    endpoints = []
    for i, address in enumerate(addresses):
        with open(os.path.join(keys_dir, 'nodes', f'node{i}.sign.pub')) as f:
            public = ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(f.read().strip()))
        endpoints.append(NodeEndpoint(i, address, public))
    return endpoints


def tls_credentials(keys_dir: str, client: str = 'submitter') -> grpc.ChannelCredentials:
    """The client's mutual-TLS credentials from keys_dir/clients.

    Args:
        keys_dir: the key directory.
        client: the client certificate's name.

    Returns:
        Channel credentials.

    Raises:
        KeyFileError: the CA cannot be read or others can rewrite it.
        OSError: the client key or certificate cannot be read.
    """
    from .tls import read_ca

    def read(*parts: str) -> bytes:
        with open(os.path.join(keys_dir, *parts), 'rb') as f:
            return f.read()
    return grpc.ssl_channel_credentials(read_ca(keys_dir), read('clients', f'{client}.key'),
                                        read('clients', f'{client}.pem'))


class Submitter:
    """Shares, signs and sends participants' packages to every node over mutual TLS."""

    def __init__(self, endpoints: Sequence[NodeEndpoint], credentials: grpc.ChannelCredentials, *,
                 params_sha256: Mapping[str, str], threshold: int | None = None, timeout: float = 30):
        """endpoints: every node of the deployment (the client's manifest); params_sha256: round id ->
        RoundParams.sha256() of the round as all nodes signed it, bound into every envelope."""
        self.endpoints = endpoints
        self.params_sha256 = params_sha256
        self.threshold = (len(endpoints) - 1) // 2 if threshold is None else threshold
        self.timeout = timeout
        self.channels = [secure_channel(e.address, credentials, node_name(e.index)) for e in endpoints]
        self.stubs = [market_pb2_grpc.NodeStub(c) for c in self.channels]

    def close(self) -> None:
        for channel in self.channels:
            channel.close()

    def _check_receipt(self, participant: str, envelope: Envelope, endpoint: NodeEndpoint,
                       receipt: market_pb2.Receipt) -> None:
        signed = receipt_bytes(receipt.round_id, receipt.participant, receipt.nonce,
                               receipt.package_sha256.hex(), receipt.accepted_unix_ms, receipt.node_index)
        try:
            endpoint.signing_key.verify(receipt.node_signature, signed)
        except InvalidSignature:
            raise SubmitError(f'{participant}: node {endpoint.index} sent a receipt with a bad signature') from None
        if receipt.nonce != envelope.nonce or receipt.package_sha256.hex() != envelope.package_hashes[endpoint.index]:
            raise SubmitError(f'{participant}: node {endpoint.index} acknowledged something else')

    def _requests(self, round_id: str, participants: Sequence[str], keys: Sequence[ed25519.Ed25519PrivateKey],
                  values: np.ndarray, kind: str = 'order') -> Prepared:
        """Share a block of participants' values (n, slots, width) at once; sign one envelope each.

        Returns [(envelope, [request for node 0, 1, ...])] in participant order."""
        try:
            params_sha256 = self.params_sha256[round_id]
        except KeyError:
            raise SubmitError(f'no parameters signed by the nodes for round {round_id!r}') from None
        shares = ff.share_values(values, self.threshold, len(self.endpoints))
        out = []
        for j, (participant, key) in enumerate(zip(participants, keys, strict=True)):
            packages = [np.ascontiguousarray(s[:, j]).astype('<u4').tobytes() for s in shares]
            envelope, signature = messages.seal(key, round_id, participant, packages, kind=kind,
                                                params_sha256=params_sha256)
            body = envelope.to_json().encode()
            out.append((envelope, [market_pb2.Submission(round_id=round_id, participant=participant, envelope=body,
                                                         signature=signature, node_index=e.index, package=package)
                                   for e, package in zip(self.endpoints, packages, strict=True)]))
        return out

    def submit(self, round_id: str, participant: str, private_key: ed25519.Ed25519PrivateKey, values: np.ndarray,
               kind: str = 'order') -> tuple[Envelope, list[market_pb2.Receipt]]:
        """Share values (slots, width) for one participant and deliver them; returns the envelope and receipts.

        Raises:
            SubmitError: a node did not accept, or its receipt is bad or for something else.
        """
        (envelope, requests), = self._requests(round_id, [participant], [private_key], values[None], kind)
        receipts = []
        for endpoint, stub, request in zip(self.endpoints, self.stubs, requests, strict=True):
            send = stub.SubmitOrder if kind == 'order' else stub.SubmitReadings
            try:
                receipt = retry_when_busy(send, request, self.timeout)
            except grpc.RpcError as exc:
                raise SubmitError(f'{participant}: node {endpoint.index} ({endpoint.address}) did not accept: '
                                  f'{exc.code().name}: {exc.details()}') from None
            self._check_receipt(participant, envelope, endpoint, receipt)
            receipts.append(receipt)
        return envelope, receipts

    def submit_batch(self, round_id: str, participants: Sequence[str], keys: Sequence[ed25519.Ed25519PrivateKey],
                     values: np.ndarray, kind: str = 'order') -> dict[str, str | None]:
        """Several participants' packages (orders, or readings) in one request per node (sent to all
        nodes concurrently). Returns {participant: None or the reason}; a participant counts only if
        every node accepted."""
        prepared = self._requests(round_id, participants, keys, values, kind)
        batches = [market_pb2.SubmissionBatch(orders=[r[i] for _, r in prepared], kind=kind)
                   for i in range(len(self.stubs))]
        calls = [stub.SubmitBatch.future(batch, timeout=self.timeout)
                 for stub, batch in zip(self.stubs, batches, strict=True)]
        outcome: dict[str, str | None] = {p: None for p in participants}
        for endpoint, stub, batch, call in zip(self.endpoints, self.stubs, batches, calls, strict=True):
            try:
                try:
                    reply = call.result()
                except grpc.RpcError as exc:
                    if not is_busy(exc):
                        raise
                    reply = retry_when_busy(stub.SubmitBatch, batch, self.timeout)
            except grpc.RpcError as exc:
                for p in participants:
                    outcome[p] = outcome[p] or (f'{p}: node {endpoint.index} ({endpoint.address}) did not accept: '
                                                f'{exc.code().name}: {exc.details()}')
                continue
            for p, reason in self._check_batch_receipt(endpoint, participants, prepared, reply).items():
                outcome[p] = outcome[p] or reason
        return outcome

    def _check_batch_receipt(self, endpoint: NodeEndpoint, participants: Sequence[str], prepared: Prepared,
                             reply: market_pb2.ReceiptBatch) -> dict[str, str]:
        """{participant: why not} of one node's reply: refusals, and every item unless the node's one
        batch signature covers exactly the envelopes sent (nonce and package hash)."""
        failed: dict[str, str] = {}
        accepted: list[tuple[str, str, str, str]] = []
        if len(reply.outcomes) != len(participants) or reply.node_index != endpoint.index:
            return {p: f'{p}: node {endpoint.index} answered another batch' for p in participants}
        for p, (envelope, _), item in zip(participants, prepared, reply.outcomes, strict=True):
            if item.error:
                failed[p] = f'{p}: node {endpoint.index} did not accept: {item.code}: {item.error}'
            elif (item.receipt.participant, item.receipt.nonce, item.receipt.package_sha256.hex()) != (
                    p, envelope.nonce, envelope.package_hashes[endpoint.index]):
                failed[p] = f'{p}: node {endpoint.index} acknowledged something else'
            else:
                accepted.append((envelope.round_id, p, envelope.nonce, envelope.package_hashes[endpoint.index]))
        try:
            endpoint.signing_key.verify(reply.node_signature, messages.batch_receipt_bytes(
                endpoint.index, reply.accepted_unix_ms, accepted))
        except InvalidSignature:
            return {p: f'{p}: node {endpoint.index} sent a batch receipt with a bad signature' for p in participants}
        return failed

    def submit_many(self, round_id: str, items: Sequence[tuple[str, ed25519.Ed25519PrivateKey, np.ndarray]],
                    workers: int = 8, batch: int = 64, kind: str = 'order') -> dict[str, str | None]:
        """items: (participant, private_key, values (slots, width)); returns {participant: error or None}."""
        outcome: dict[str, str | None] = {}
        blocks = [items[i:i + batch] for i in range(0, len(items), batch)]
        with futures.ThreadPoolExecutor(workers) as pool:
            jobs = [pool.submit(self.submit_batch, round_id, [p for p, _, _ in block], [k for _, k, _ in block],
                                np.stack([v for _, _, v in block]), kind) for block in blocks]
            for job in jobs:
                outcome.update(job.result())
        return outcome


def receipts_json(receipts: Iterable[market_pb2.Receipt]) -> str:
    """Receipts as a JSON list (node, nonce, accepted_unix_ms, package_sha256 and signature hex).

    Args:
        receipts: the nodes' receipts.

    Returns:
        The JSON text.
    """
    return json.dumps([{'node': r.node_index, 'nonce': r.nonce, 'accepted_unix_ms': r.accepted_unix_ms,
                        'package_sha256': r.package_sha256.hex(), 'signature': r.node_signature.hex()}
                       for r in receipts])

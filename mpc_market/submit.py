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
from concurrent import futures
from dataclasses import dataclass

import grpc
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from . import envelope as envelopes
from . import field as ff
from .deployment import secure_channel
from .keys import node_name
from .rpc import market_pb2, market_pb2_grpc
from .service import receipt_bytes


class SubmitError(Exception):
    """A submission that did not reach every node; says which node and why."""


@dataclass
class NodeEndpoint:
    index: int
    address: str                 # host:port
    signing_key: object          # Ed25519PublicKey of the node's receipts


def load_endpoints(keys_dir, addresses):
    endpoints = []
    for i, address in enumerate(addresses):
        with open(os.path.join(keys_dir, 'nodes', f'node{i}.sign.pub')) as f:
            public = ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(f.read().strip()))
        endpoints.append(NodeEndpoint(i, address, public))
    return endpoints


def tls_credentials(keys_dir, client='submitter'):
    def read(*parts):
        with open(os.path.join(keys_dir, *parts), 'rb') as f:
            return f.read()
    return grpc.ssl_channel_credentials(read('ca', 'ca.pem'), read('clients', f'{client}.key'),
                                        read('clients', f'{client}.pem'))


class Submitter:
    def __init__(self, endpoints, credentials, threshold=None, timeout=30):
        self.endpoints = endpoints
        self.threshold = (len(endpoints) - 1) // 2 if threshold is None else threshold
        self.timeout = timeout
        self.channels = [secure_channel(e.address, credentials, node_name(e.index)) for e in endpoints]
        self.stubs = [market_pb2_grpc.NodeStub(c) for c in self.channels]

    def close(self):
        for channel in self.channels:
            channel.close()

    def submit(self, round_id, participant, private_key, values, kind='order'):
        """Share values (slots, width) for one participant and deliver them; returns the receipts."""
        shares = ff.share_values(values[None], self.threshold, len(self.endpoints))
        packages = [s.astype('<u4').tobytes() for s in shares]
        envelope, signature = envelopes.seal(private_key, round_id, participant, packages)
        receipts = []
        for endpoint, stub, package in zip(self.endpoints, self.stubs, packages):
            send = stub.SubmitOrder if kind == 'order' else stub.SubmitReadings
            request = market_pb2.Submission(round_id=round_id, participant=participant,
                                            envelope=envelope.to_json().encode(), signature=signature,
                                            node_index=endpoint.index, package=package)
            try:
                receipt = send(request, timeout=self.timeout)
            except grpc.RpcError as exc:
                raise SubmitError(f'{participant}: node {endpoint.index} ({endpoint.address}) did not accept: '
                                  f'{exc.code().name}: {exc.details()}') from None
            signed = receipt_bytes(receipt.round_id, receipt.participant, receipt.nonce,
                                   receipt.package_sha256.hex(), receipt.accepted_unix_ms, receipt.node_index)
            try:
                endpoint.signing_key.verify(receipt.node_signature, signed)
            except InvalidSignature:
                raise SubmitError(f'{participant}: node {endpoint.index} sent a receipt with a bad signature') from None
            if receipt.nonce != envelope.nonce or receipt.package_sha256.hex() != envelope.package_hashes[endpoint.index]:
                raise SubmitError(f'{participant}: node {endpoint.index} acknowledged something else')
            receipts.append(receipt)
        return envelope, receipts

    def submit_many(self, round_id, items, workers=8):
        """items: (participant, private_key, values); returns {participant: error or None}."""
        outcome = {}
        with futures.ThreadPoolExecutor(workers) as pool:
            jobs = {pool.submit(self.submit, round_id, p, key, values): p for p, key, values in items}
            for job in futures.as_completed(jobs):
                error = job.exception()
                outcome[jobs[job]] = None if error is None else str(error)
        return outcome


def receipts_json(receipts):
    return json.dumps([{'node': r.node_index, 'nonce': r.nonce, 'accepted_unix_ms': r.accepted_unix_ms,
                        'package_sha256': r.package_sha256.hex(), 'signature': r.node_signature.hex()}
                       for r in receipts])

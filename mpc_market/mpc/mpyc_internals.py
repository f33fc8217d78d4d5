"""Every use of an MPyC internal, in one place, checked against the MPyC versions it was written for.

The market nodes rely on MPyC's public API (secure arrays, comparisons, transfer) and on a few of
its private parts. Those are all here, so an MPyC upgrade has one module to review, and
tests/security/test_mpyc_internals.py fails when the source of any of them changes:

- ``mpyc.runtime.pickle``: replaced by mpc_market.mpc.wire, so nothing a peer sends is unpickled.
- ``Runtime.start``: replaced by :func:`start`, which binds the listener to the party's own
  configured address and runs every link over mutual TLS with :class:`AuthenticatedExchanger`.
- ``asyncoro.MessageExchanger``: subclassed to accept a link only from the certificate of the
  party it claims to be, and to end the run when an authenticated peer drops mid-clearing.
- ``thresha.np_random_split`` and ``thresha._recombination_vector``: faster drop-ins for
  GF(2^127 - 1) (one os.urandom per batch; small signed Lagrange coefficients).
- ``Runtime._reshare``, ``Runtime._np_randoms``, ``Runtime._prss_keys``, ``Runtime._prss_uci``:
  thin wrappers below (resharing, PRSS masks and keys for the three-party random bits).
"""

import asyncio
import functools
import logging
import os
import re
import ssl
import time
from collections.abc import Mapping, Sequence
from typing import Any

import mpyc
import numpy as np
from mpyc import asyncoro, thresha

from . import field as ff
from . import wire

__all__ = ['SUPPORTED_VERSIONS', 'install', 'start', 'AuthenticatedExchanger', 'party_of_certificate',
           'reshare', 'np_randoms', 'prss_keys', 'prss_uci', 'tls_files']

SUPPORTED_VERSIONS = ('0.11',)
PARTY_NAME = re.compile(r'^MPyC party (\d{1,2})$')

log = logging.getLogger('mpc_market.mpc')
_state = {'shutting_down': False, 'abort_on_lost_peer': True}
# MPyC has no type information: its runtime (rt), field classes and secure arrays are Any here


# -- no pickle -------------------------------------------------------------------------------------
class _WireModule:
    """Stands in for the pickle module inside mpyc.runtime (dumps/loads only)."""
    dumps = staticmethod(wire.dumps)
    loads = staticmethod(wire.loads)


def install() -> None:
    """Patch MPyC for the market nodes; idempotent.

    Raises:
        SystemExit: an MPyC version it was not checked on.
    """
    from mpyc import runtime as mpyc_runtime
    if mpyc.__version__ not in SUPPORTED_VERSIONS:
        raise SystemExit(f'error: MPyC {mpyc.__version__} is not supported (checked: {", ".join(SUPPORTED_VERSIONS)})')
    mpyc_runtime.pickle = _WireModule
    thresha.np_random_split = np_random_split
    if not getattr(thresha._recombination_vector, 'signed', False):
        signed: Any = functools.cache(_signed_recombination_vector)  # carries a marker attribute
        signed.signed = True
        thresha._recombination_vector = signed


def shutting_down() -> None:
    """From now on a closed link is the normal end of the run, not a lost peer."""
    _state['shutting_down'] = True


# -- authenticated links ---------------------------------------------------------------------------
def party_of_certificate(peercert: Mapping[str, Any] | None) -> int | None:
    """The party index a verified peer certificate belongs to.

    Args:
        peercert: ssl's getpeercert() dict (None or empty: no certificate).

    Returns:
        i for exactly one 'MPyC party i' DNS name and the matching 'node{i}' name; None for any
        other certificate (a submitter, the broker, an operator, an aggregator).
    """
    if not peercert:
        return None
    names = {value for kind, value in peercert.get('subjectAltName', ()) if kind == 'DNS'}
    parties = [int(m.group(1)) for m in map(PARTY_NAME.match, names) if m]
    if len(parties) != 1 or f'node{parties[0]}' not in names:
        return None
    return parties[0]


class AuthenticatedExchanger(asyncoro.MessageExchanger):
    """MPyC's message exchanger, accepting a link only from the node its certificate names.

    Server side (a lower-numbered party connects to us): the certificate must name a party below
    ours that is not connected yet, and the party id the peer then sends must be that party; the
    connection is dropped before any of its bytes is processed otherwise. Client side: the
    server's certificate must name the party we dialled.
    """

    __slots__ = ('certified_pid', 'messages_sent')

    def __init__(self, rt: Any, peer_pid: int | None = None) -> None:
        super().__init__(rt, peer_pid)
        self.messages_sent = 0

    def send(self, pc: int, payload: Any) -> None:
        """MPyC's send, counted: messages per link bound the sequential exchanges of a run."""
        self.messages_sent += 1
        super().send(pc, payload)

    def connection_made(self, transport: Any) -> None:  # an asyncio SSL transport
        rt = self.runtime
        certified = party_of_certificate(transport.get_extra_info('peercert'))
        self.certified_pid = certified
        if self.peer_pid is not None:
            ok = certified == self.peer_pid
        else:
            ok = certified is not None and certified < rt.pid and rt.parties[certified].protocol is None
        if not ok:
            log.warning('refused an MPyC link from %s (certificate names party %s)',
                        transport.get_extra_info('peername'), certified)
            self.certified_pid = None
            self.transport = transport  # type: ignore[misc]  # a slot of MessageExchanger (MPyC is untyped)
            transport.abort()
            return
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.certified_pid is None:
            return  # a refused link: its bytes are never looked at
        if self.peer_pid is None and len(self.bytes) + len(data) >= 2:
            claimed = int.from_bytes((bytes(self.bytes) + bytes(data[:2]))[:2], 'little')
            if claimed != self.certified_pid or self.runtime.parties[claimed].protocol is not None:
                log.warning('refused an MPyC link: certificate of party %d claims party %d',
                            self.certified_pid, claimed)
                self.certified_pid = None
                self.transport.abort()
                return
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.certified_pid is None or self.peer_pid is None:
            return  # a refused or half-open link never became a party's
        if not _state['shutting_down'] and _state['abort_on_lost_peer']:
            print(f'error: lost connection to node {self.peer_pid} during clearing', flush=True)
            os._exit(3)
        self.runtime.unset_protocol(self.peer_pid)


def tls_files(keys_dir: str, index: int) -> tuple[str, str, str]:
    """A node's TLS files.

    Args:
        keys_dir: a keys directory (mpc_market.common.keys layout).
        index: the node.

    Returns:
        (certificate, key, CA) paths.
    """
    return (os.path.join(keys_dir, 'nodes', f'node{index}.pem'), os.path.join(keys_dir, 'nodes', f'node{index}.key'),
            os.path.join(keys_dir, 'ca', 'ca.pem'))


def tls_context(purpose: ssl.Purpose, keys_dir: str, index: int) -> ssl.SSLContext:
    """A node's TLS context for its MPyC links: its own certificate, and the deployment's CA as the
    only trust anchor (never the system's default CAs, nor SSL_CERT_FILE/SSL_CERT_DIR: a peer
    certified by any other CA is refused in the handshake).

    Args:
        purpose: ssl.Purpose.CLIENT_AUTH for the listener, SERVER_AUTH for the connecting side.
        keys_dir: the node's keys directory (tls_files).
        index: the node.

    Returns:
        The context (TLS >= 1.2, peer certificate required).

    Raises:
        KeyFileError: the CA certificate (or its directory) is writable by others.
        OSError: the TLS files cannot be read.
    """
    from ..common.files import check_not_writable_by_others
    crt, key, ca = tls_files(keys_dir, index)
    check_not_writable_by_others(ca, 'CA certificate')  # whoever can rewrite it chooses our MPC peers
    context = ssl.create_default_context(purpose, cafile=ca)  # a cafile: no default CAs are loaded
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(crt, keyfile=key)
    context.verify_mode = ssl.CERT_REQUIRED
    context.hostname_checks_common_name = False  # a client certificate's CN is not a party name
    return context


async def start(rt: Any, keys_dir: str) -> None:
    """Runtime.start over mutual TLS with authenticated links; the listener binds to the party's
    own address only. Returns when every peer is connected (retrying until they are up).

    Args:
        rt: the MPyC runtime.
        keys_dir: this node's keys directory (tls_files).

    Raises:
        KeyFileError: the CA certificate (or its directory) is writable by others.
        OSError: the TLS files cannot be read, or the own address cannot be bound.
    """
    m = len(rt.parties)
    rt.options.ssl = True
    if m == 1:
        rt.start_time = time.time()
        return
    loop = rt._loop
    for peer in rt.parties:
        peer.protocol = asyncio.Future(loop=loop) if peer.pid == rt.pid else None
    server = None
    if rt.pid:  # lower-numbered parties connect to us
        me = rt.parties[rt.pid]
        context = tls_context(ssl.Purpose.CLIENT_AUTH, keys_dir, rt.pid)
        server = await loop.create_server(lambda: AuthenticatedExchanger(rt), host=me.host, port=me.port,
                                          ssl=context, reuse_address=True)
    for peer in rt.parties[rt.pid + 1:]:
        context = tls_context(ssl.Purpose.SERVER_AUTH, keys_dir, rt.pid)
        while True:
            try:
                await loop.create_connection(functools.partial(AuthenticatedExchanger, rt, peer.pid),
                                             peer.host, peer.port, ssl=context,
                                             server_hostname=f'MPyC party {peer.pid}')
                if rt.parties[peer.pid].protocol is not None:
                    break
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - not up yet, or refused: retry (the watchdog bounds it)
                log.debug('connecting to party %d: %s', peer.pid, exc)
            await asyncio.sleep(0.1)
    await rt.parties[rt.pid].protocol
    if server is not None:
        server.close()
    rt.start_time = time.time()


# -- faster resharing internals over GF(2^127 - 1) -------------------------------------------------
_original_np_random_split = thresha.np_random_split
_original_recombination_vector = thresha._recombination_vector


def random_field_elements(count: int) -> np.ndarray:
    """Uniformly random elements of GF(2^127 - 1) (bias 2**-127), from os.urandom.

    Args:
        count: how many.

    Returns:
        A Python-int object array (count,).
    """
    raw = np.frombuffer(os.urandom(16 * count), dtype=np.uint64).reshape(2, count)
    high = (raw[1] & np.uint64((1 << 63) - 1)).astype(object)
    return ((high << 64) + raw[0].astype(object)) % ff.MODULUS


def np_random_split(field: Any, s: Any, t: int, m: int) -> Any:
    """Shamir shares of the secrets s with degree-t polynomials, as MPyC's (whose
    secrets.randbelow per coefficient is the largest single cost of resharing).

    Args:
        field: the MPyC field class (another field goes to MPyC's own).
        s: the secrets, a field array or an array of ints.
        t: the degree.
        m: the parties.

    Returns:
        m rows of shares (an object array over GF(2^127 - 1), else MPyC's result).
    """
    if field.modulus != ff.MODULUS:
        return _original_np_random_split(field, s, t, m)
    if isinstance(s, field.array):
        s = s.value
    n = len(s)
    coefficients = random_field_elements(t * n).reshape(t, n)
    rows = []
    for x in range(1, m + 1):
        acc = s.copy()
        for d in range(t):
            acc = acc + coefficients[d] * (x ** (d + 1))
        rows.append(acc % ff.MODULUS)
    return np.stack(rows)


def _signed_recombination_vector(field: Any, xs: Sequence[Any], x_r: Any) -> list[Any]:
    """MPyC's Lagrange coefficients as small signed ints where possible ((3, -3, 1), not
    (3, p-3, 1)): multiplying 127-bit shares by them is cheaper; results are reduced anyway."""
    vector = _original_recombination_vector(field, xs, x_r)
    p = field.modulus
    if not isinstance(p, int):
        return vector
    return [v - p if v > p // 2 else v for v in vector]


# -- thin wrappers for private runtime methods ---------------------------------------------------
def reshare(rt: Any, field_array: Any) -> Any:
    """A fresh degree-t sharing of degree-2t shares (MPyC's resharing step of a multiplication).

    Args:
        rt: the MPyC runtime.
        field_array: the shares, an MPyC field array.

    Returns:
        What Runtime._reshare returns: a future of the fresh field array.
    """
    return rt._reshare(field_array)


def np_randoms(rt: Any, field: Any, n: int, bound: int | None = None) -> Any:
    """Shares of n PRSS random values below bound (the field size when None); no communication.

    Args:
        rt: the MPyC runtime.
        field: the MPyC field class.
        n: how many.
        bound: the exclusive upper bound, or None.

    Returns:
        An MPyC field array (a future of one with no_prss).
    """
    return rt._np_randoms(field, n, bound) if bound is not None else rt._np_randoms(field, n)


def prss_keys(rt: Any) -> dict[tuple[int, ...], bytes]:
    """This party's PRSS keys.

    Args:
        rt: the MPyC runtime.

    Returns:
        {subset of parties: 16-byte key} for the subsets this party is in.
    """
    return rt._prss_keys


def prss_uci(rt: Any) -> bytes:
    """The next unique common input of PRSS (advances the program counter).

    Args:
        rt: the MPyC runtime.

    Returns:
        8 bytes.
    """
    return rt._prss_uci()

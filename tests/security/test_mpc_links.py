"""Attacks on the nodes' MPyC links: outsiders, participants and other nodes posing as a party.

Nodes 1 and 2 of a clearing start first; before node 0 comes up, an attacker connects to both
claiming to be party 0 and sends a pickle that would create a file if anything unpickled it.
Every attempt must be dropped, the real node 0 must then connect, and the market must clear
exactly as the plaintext reference.
"""

import os
import pickle
import socket
import ssl
import struct
import sys
import time
from decimal import Decimal

import pytest

from mpc_market.common import keys
from mpc_market.market.book import Book
from mpc_market.market.config import MarketConfig
from mpc_market.market.orders import Order
from mpc_market.market.plain import clear_plain
from mpc_market.mpc.jobs import JobDir, job_spec
from mpc_market.mpc.local import (
    free_ports,
    mark_ready,
    mpc_result,
    read_public_outputs,
    reconstruct,
    share_book,
    wait_nodes,
)
from mpc_market.mpc.supervisor import PartyProcess

pytestmark = [pytest.mark.slow]

CONFIG = MarketConfig(Decimal('0.047'), Decimal('0.139'), Decimal('0.001'))


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))


def _book():
    return Book(CONFIG, [Order('s1', 0, 'sell', 700, Decimal('0.05')), Order('s2', 0, 'sell', 500, Decimal('0.07')),
                         Order('b1', 0, 'buy', 900, Decimal('0.12')), Order('b2', 0, 'buy', 400, Decimal('0.06'))])


def _start(job_dir, index, parties, keys_dir):
    return PartyProcess([sys.executable, '-m', 'mpc_market.mpc.node', '--job', job_dir, '--index', str(index),
                         '--parties', parties, '--keys', keys_dir], JobDir(job_dir).node(index).log)


def _wait_listening(port, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(('127.0.0.1', port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f'port {port} never listened')


def _attack(port, cert, key, ca, marker):
    """Connect as 'party 0' and send a malicious pickle; True if the node kept the link open."""
    payload = pickle.dumps(_Exploit(marker))
    message = (0).to_bytes(2, 'little') + bytes(64) + struct.pack(f'<qI{len(payload)}s', 1, len(payload), payload)
    raw = socket.create_connection(('127.0.0.1', port), timeout=5)
    try:
        if cert is None:
            raw.sendall(message)
            stream = raw
        else:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
            context.check_hostname = False
            context.load_cert_chain(cert, key)
            stream = context.wrap_socket(raw)
            stream.sendall(message)
        stream.settimeout(3)
        return stream.recv(1) != b''
    except (ssl.SSLError, OSError):
        return False
    finally:
        raw.close()


def _listening_addresses(port):
    """Local addresses with a TCP listener on port (from /proc/net/tcp and tcp6)."""
    found = []
    for table in ('/proc/net/tcp', '/proc/net/tcp6'):
        with open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, hex_port = local.split(':')
                if state == '0A' and int(hex_port, 16) == port:
                    found.append(address)
    return found


@pytest.fixture()
def deployment_keys(tmp_path):
    base = tmp_path / 'keys'
    keys.create_ca(str(base))
    for i in range(3):
        keys.create_node(str(base), i, hosts=('127.0.0.1',))
    keys.create_client(str(base), 'submitter')
    foreign = tmp_path / 'foreign'
    keys.create_ca(str(foreign))
    keys.create_node(str(foreign), 0, hosts=('127.0.0.1',))
    return str(base), str(foreign)


ATTACKERS = {
    'submitter certificate': lambda k, f: (f'{k}/clients/submitter.pem', f'{k}/clients/submitter.key'),
    'node 2 certificate claiming party 0': lambda k, f: (f'{k}/nodes/node2.pem', f'{k}/nodes/node2.key'),
    'node 0 certificate of a foreign CA': lambda k, f: (f'{f}/nodes/node0.pem', f'{f}/nodes/node0.key'),
    'no TLS at all': lambda k, f: (None, None),
}


@pytest.mark.parametrize('attacker', sorted(ATTACKERS))
def test_only_node_0_can_be_party_0(tmp_path, deployment_keys, attacker):
    keys_dir, foreign = deployment_keys
    cert, key = ATTACKERS[attacker](keys_dir, foreign)
    book = _book()
    job_dir = str(tmp_path / 'job')
    spec = job_spec(book, 3, 8192)
    spec.save(job_dir)
    share_book(book, spec, job_dir)
    ports = free_ports(3)
    parties = ','.join(f'127.0.0.1:{p}' for p in ports)
    procs = [_start(job_dir, i, parties, keys_dir) for i in (1, 2)]
    marker = str(tmp_path / 'pwned')
    try:
        for port in ports[1:]:
            _wait_listening(port)
            assert _listening_addresses(port) == ['0100007F'], 'the MPyC listener must bind 127.0.0.1 only'
            assert not _attack(port, cert, key, f'{keys_dir}/ca/ca.pem', marker), f'{attacker}: link accepted'
        procs.insert(0, _start(job_dir, 0, parties, keys_dir))
        mark_ready(job_dir, 3)
        wait_nodes(procs, job_dir, timeout=120)
    finally:
        for party in procs:
            party.kill()
    assert not os.path.exists(marker), 'the attacker ran code on a node'
    logs = ''.join(open(JobDir(job_dir).node(i).log).read() for i in (1, 2))
    if cert is not None and 'foreign' not in attacker:
        assert 'refused an MPyC link' in logs
    values = reconstruct(job_dir, spec)
    pi, si = book.participant_index, book.slot_index
    result = mpc_result(book, read_public_outputs(job_dir, 3),
                         lambda o: tuple(int(v) for v in values[pi[o.participant], si[o.slot]]), (0, 0, 0))
    plain = clear_plain(book)
    assert result.slots == plain.slots and result.rows == plain.rows



def test_a_foreign_process_cannot_join_a_local_run(tmp_path, monkeypatch):
    """Local mode (clear, settle, demo): the node processes use per-run certificates in the private
    job directory, so a process of another user (here: an attacker thread knocking on the run's
    ports with and without TLS) is refused and the run's result is unchanged."""
    import threading

    from mpc_market.mpc import local
    foreign = tmp_path / 'foreign'
    keys.create_ca(str(foreign))
    keys.create_node(str(foreign), 0, hosts=('127.0.0.1',))
    ports = free_ports(3)
    monkeypatch.setattr(local, 'free_ports', lambda count: ports[:count])
    marker = str(tmp_path / 'pwned')
    stop, attempts, accepted = threading.Event(), [0], [0]

    def knock():
        while not stop.is_set():
            for port in ports[1:]:
                for cert in (None, (f'{foreign}/nodes/node0.pem', f'{foreign}/nodes/node0.key')):
                    try:
                        ok = _attack(port, *(cert or (None, None)), f'{foreign}/ca/ca.pem', marker)
                    except OSError:
                        continue  # not listening yet
                    attempts[0] += 1
                    accepted[0] += ok
            time.sleep(0.02)
    attacker = threading.Thread(target=knock, daemon=True)
    attacker.start()
    book = _book()
    try:
        secure = local.clear_mpc(book, timeout=120)
    finally:
        stop.set()
        attacker.join(10)
    plain = clear_plain(book)
    assert secure.slots == plain.slots and secure.rows == plain.rows
    assert attempts[0] > 0 and accepted[0] == 0 and not os.path.exists(marker)

"""Flooding: a client certificate sending forged submissions cannot stall a node.

The end-to-end test runs `python -m benchmarks flood` (two flooder processes, 64 forged batches of 256
items in flight against node 0) and requires every honest submission and broker status call to
answer within the 2 s bar. The unit tests pin each admission rule."""

import os
import subprocess
import sys
import threading

import grpc
import pytest

from mpc_market.net.admission import RETRY_KEY, Admission, is_busy, retry_when_busy

REPO = os.path.join(os.path.dirname(__file__), '..', '..')  # python -m benchmarks runs from the checkout's root


@pytest.mark.slow
@pytest.mark.deployment
def test_honest_calls_answer_within_2_s_under_a_forged_flood():
    proc = subprocess.run([sys.executable, '-m', 'benchmarks', 'flood', '--seconds', '5', '--no-save',
                           '--check', '2.0'], capture_output=True, text=True, timeout=240, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert 'turned away' in proc.stdout


class Aborted(Exception):
    pass


class FakeContext:
    def __init__(self, name):
        self.name = name

    def auth_context(self):
        return {'x509_common_name': [self.name.encode()]}

    def set_trailing_metadata(self, metadata):
        self.trailing = metadata

    def abort(self, code, details):
        raise Aborted(code, details)


def _hold(admission, name, items, entered, release):
    with admission.admit(FakeContext(name), items):
        entered.release()
        release.wait()


def test_admission_reserves_workers_and_shares_them_between_certificates():
    admission = Admission(workers=6, reserved=2, per_client=2, items_per_s=1e9, burst=10**9)
    entered, release = threading.Semaphore(0), threading.Event()
    threads = [threading.Thread(target=_hold, args=(admission, name, 1, entered, release))
               for name in ('flooder', 'flooder', 'other', 'other')]
    for t in threads:
        t.start()
    for _ in threads:
        entered.acquire()
    with pytest.raises(Aborted, match='busy'):  # 4 of 6 workers busy: the last 2 are reserved
        with admission.admit(FakeContext('third')):
            pass
    release.set()
    for t in threads:
        t.join()
    release.clear()
    threads = [threading.Thread(target=_hold, args=(admission, 'flooder', 1, entered, release)) for _ in range(2)]
    for t in threads:
        t.start()
    for _ in threads:
        entered.acquire()
    with pytest.raises(Aborted, match='in flight'):  # the flooder's own limit
        with admission.admit(FakeContext('flooder')):
            pass
    with admission.admit(FakeContext('honest')):  # another certificate still gets in
        pass
    release.set()
    for t in threads:
        t.join()


def test_admission_bounds_items_per_request_and_per_certificate_rate():
    admission = Admission(workers=4, reserved=1, items_per_s=10, burst=300, max_items=256)
    with pytest.raises(Aborted, match='at most 256'):
        with admission.admit(FakeContext('a'), 257):
            pass
    with admission.admit(FakeContext('a'), 256):
        pass
    with pytest.raises(Aborted, match='rate limit'):
        with admission.admit(FakeContext('a'), 100):
            pass
    with admission.admit(FakeContext('b'), 100):  # the bucket is per certificate
        pass


def test_clients_back_off_while_busy_and_stop_on_other_errors():
    class Busy(grpc.RpcError):
        def code(self):
            return grpc.StatusCode.RESOURCE_EXHAUSTED

        def details(self):
            return 'node 0: busy; retry later'

        def trailing_metadata(self):
            return ((RETRY_KEY, 'busy'),)

    class Verdict(Busy):  # e.g. a batch over the item limit: the same code, but retrying cannot help
        def trailing_metadata(self):
            return ()
    calls = []

    def flaky(request, timeout):
        calls.append(request)
        if len(calls) < 3:
            raise Busy()
        return 'ok'
    assert retry_when_busy(flaky, 'r', 5) == 'ok' and len(calls) == 3
    assert is_busy(Busy())
    assert not is_busy(Verdict())  # told by the metadata, not by the words of the message

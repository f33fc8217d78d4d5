"""``mpc-market up`` as a real process (issue 22, problem 13): ``--http`` serves the operator page
and says where; the next-step hint names a round id the broker does not have yet (a reused
deployment directory has rounds already); when a node dies, ``up`` says which and why."""

import os
import re
import signal
import subprocess
import sys
import urllib.request

import pytest

from mpc_market.mpc.local import free_ports

from helpers import cli, wait_for

pytestmark = [pytest.mark.deployment, pytest.mark.slow]


class Up:
    """One `mpc-market up` process; its stdout and stderr in files."""

    def __init__(self, tmp_path, name, *args):
        self.out, self.err = tmp_path / f'{name}.out', tmp_path / f'{name}.err'
        with open(self.out, 'w') as out, open(self.err, 'w') as err:
            self.proc = subprocess.Popen([sys.executable, '-m', 'mpc_market', 'up', *map(str, args)], stdout=out,
                                         stderr=err, env=dict(os.environ, PYTHONUNBUFFERED='1'))
        wait_for(lambda: 'Ctrl-C stops everything.' in self.stdout() or self.proc.poll() is not None, 120,
                 '`up` to start')
        assert self.proc.poll() is None, self.stdout() + self.stderr()

    def stdout(self):
        return self.out.read_text()

    def stderr(self):
        return self.err.read_text()

    def broker(self):
        return re.search(r'^broker at ([^;]+);', self.stdout(), re.M).group(1)

    def hinted_round(self):
        ids = set(re.findall(r'--round (\S+)', self.stdout()))
        assert len(ids) == 1, self.stdout()
        return ids.pop()

    def wait(self, timeout=60):
        return self.proc.wait(timeout)


def node_pid(directory, index):
    """The pid of the node process whose command line names directory/node{index}.toml."""
    wanted = os.path.join(str(directory), f'node{index}.toml').encode()
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open(f'/proc/{pid}/cmdline', 'rb') as f:
                if wanted in f.read().split(b'\0'):
                    return int(pid)
        except OSError:
            continue
    return None


def test_up_serves_the_page_hints_a_new_round_and_names_a_dead_node(tmp_path):
    directory = tmp_path / 'dep'
    page_port, = free_ports(1)
    page = f'127.0.0.1:{page_port}'
    first = Up(tmp_path, 'first', '--dir', directory, '--base-port', 0, '--http', page)
    try:
        assert f'operator page: http://{page}/\n' in first.stdout(), first.stdout()
        with urllib.request.urlopen(f'http://{page}/', timeout=10) as reply:
            assert reply.status == 200 and b'<html' in reply.read().lower()
        assert first.hinted_round() == 'r1'
        broker, keys = first.broker(), directory / 'keys'
        market = tmp_path / 'market.toml'
        market.write_text('[market]\nprice_floor = 0.10\nprice_ceiling = 0.20\ntick = 0.01\n')
        for round_id in ('r1', 'r2'):  # the hint's round, and one more: the next hint must skip both
            cli('round', 'open', '--broker', broker, '--keys', keys, '--round', round_id, '--slots', '0-3',
                '--market', market, '--gate-closure-in', 600, check=True)
    finally:
        first.proc.send_signal(signal.SIGTERM)
    assert first.wait() == 0, first.stderr()

    second = Up(tmp_path, 'second', '--dir', directory, '--http', page)  # the same directory, reused
    try:
        assert 'using the existing deployment' in second.stdout(), second.stdout()
        assert second.hinted_round() == 'r3', second.stdout()
        pid = node_pid(directory, 1)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        code = second.wait()
    finally:
        if second.proc.poll() is None:
            second.proc.send_signal(signal.SIGTERM)
            second.wait()
    err = second.stderr()
    assert code == 1, err
    line, = err.splitlines()
    assert line.startswith('error: node1 stopped (killed by signal SIGKILL; last log line: '), line
    assert f'see {directory}/node1.log' in line, line
    assert node_pid(directory, 0) is None and node_pid(directory, 2) is None  # the others were stopped with it


def test_up_refuses_a_bad_page_address(tmp_path):
    for address, words in (('localhost', 'expected "host:port"'), ('127.0.0.1:0', 'the port must be 1..65535')):
        bad = cli('up', '--dir', tmp_path / 'dep', '--http', address)
        assert bad.returncode == 2 and bad.stderr.startswith('error: --http: ') and words in bad.stderr, bad.stderr
        assert not (tmp_path / 'dep').exists()

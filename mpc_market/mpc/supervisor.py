"""The one supervisor of MPyC party processes, for local runs (every party on this machine) and a
node daemon's clearing and settlement (its own party).

A lost peer makes MPyC wait forever, so the supervisor ends a run at the first party that failed,
at a start-up deadline (every party logged 'connected') and at a run deadline, killing every
party still running. What failed is a ``PartyFailure``; each caller words it for its readers.
"""

import os
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

POLL_S = 0.05
BLAS_THREADS = ('OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS')   # OpenBLAS reads the first it finds set
CONNECTED = 'connected'   # the line a party logs once every MPyC link is up (mpc/node.py)
PROGRESS = 'progress '    # node 0's 'progress PHASE DONE TOTAL' lines


def with_single_threaded_blas(env: Mapping[str, str]) -> dict[str, str]:
    """An environment with one OpenBLAS thread unless it chooses a count itself.

    A party's only BLAS calls are small float64 products (mpc.field.lincomb): one thread takes as
    long as two there (46 against 42-45 ms a chunk of 8192 orders) at half the CPU, and OpenBLAS's
    pool costs CPU at numpy's import (about 0.07 s of every party's start, measured on 2 cores).

    Args:
        env: the environment to start a process with.

    Returns:
        A copy, with OPENBLAS_NUM_THREADS=1 if neither OPENBLAS_NUM_THREADS nor OMP_NUM_THREADS is set.
    """
    if any(name in env for name in BLAS_THREADS):
        return dict(env)
    return {**env, 'OPENBLAS_NUM_THREADS': '1'}


class PartyProcess:
    """One party child process writing its stdout and stderr to its own log file."""

    def __init__(self, argv: list, log_path: str, cwd: str | None = None, env: dict | None = None):
        """Start it.

        Args:
            argv: the command line (``python -m mpc_market.mpc.node ...``).
            log_path: its log, written from the start (truncated).
            cwd: its working directory.
            env: its environment (default: ours), through with_single_threaded_blas.
        """
        self.log_path = log_path
        env = with_single_threaded_blas(os.environ if env is None else env)
        with open(log_path, 'w') as log:
            self.process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        self._connected = False

    @property
    def returncode(self) -> int | None:
        """Its exit status, None while it runs."""
        return self.process.poll()

    def connected(self) -> bool:
        """Whether it logged that every MPyC link is up."""
        if not self._connected:
            with open(self.log_path) as f:
                self._connected = any(line.strip() == CONNECTED for line in f)
        return self._connected

    def lines(self) -> list:
        """Its log lines that say something (no blanks, no progress)."""
        with open(self.log_path) as f:
            return [ln.strip() for ln in f if ln.strip() and not ln.startswith(PROGRESS)]

    def last_error(self) -> str:
        """Its last 'error: ...' line without the prefix, else its last line ('' if none)."""
        lines = self.lines()
        errors = [ln for ln in lines if ln.startswith('error:')]
        return errors[-1][len('error:'):].strip() if errors else (lines[-1] if lines else '')

    def kill(self) -> None:
        """Kill it if it still runs, and reap it."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def relay_progress(log_path: str, offset: int, progress: Callable[[str, int, int], None] | None) -> int:
    """Pass a log's complete 'progress PHASE DONE TOTAL' lines from offset to progress(phase, done,
    total); returns the new offset."""
    with open(log_path) as f:
        f.seek(offset)
        text = f.read()
    complete = text[:text.rfind('\n') + 1]
    for line in complete.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == PROGRESS.strip() and progress:
            progress(parts[1], int(parts[2]), int(parts[3]))
    return offset + len(complete)


@dataclass(frozen=True)
class PartyFailure:
    """Why a run ended without every party succeeding.

    index: the party (None for the run's deadline); kind: 'exited' (returncode says how),
    'connect' (not all links up by the start-up deadline) or 'timeout' (the run's deadline).
    """

    index: int | None
    kind: str
    returncode: int | None = None


def supervise(parties: list, timeout: float | None = None, connect_timeout: float | None = None,
              tick: Callable[[], None] | None = None) -> PartyFailure | None:
    """Wait until every party exited 0, or until the first failure; then no party runs.

    Args:
        parties: the PartyProcesses of the run.
        timeout: seconds for the whole run (None: no deadline).
        connect_timeout: seconds until every party must have logged 'connected' (None: not watched).
        tick: called every poll (to relay progress).

    Returns:
        None if every party exited 0, else the first PartyFailure.
    """
    started = time.monotonic()
    try:
        while any(p.returncode is None for p in parties):
            for i, party in enumerate(parties):
                if party.returncode not in (None, 0):  # a lost peer would make the others wait forever
                    return PartyFailure(i, 'exited', party.returncode)
            elapsed = time.monotonic() - started
            if connect_timeout is not None and elapsed > connect_timeout:
                for i, party in enumerate(parties):
                    if party.returncode is None and not party.connected():
                        return PartyFailure(i, 'connect')
            if timeout is not None and elapsed > timeout:
                return PartyFailure(None if len(parties) > 1 else 0, 'timeout')
            if tick:
                tick()
            time.sleep(POLL_S)
        if tick:
            tick()
        for i, party in enumerate(parties):
            if party.returncode != 0:
                return PartyFailure(i, 'exited', party.returncode)
        return None
    finally:
        for party in parties:
            party.kill()

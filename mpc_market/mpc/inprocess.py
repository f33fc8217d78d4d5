"""The MPC engine with one party in this process (MPyC's m = 1, t = 0), as MPyC's own tests run.

The party executes exactly the node code (mpc_market.mpc.node.run_party on a job directory: the
same packages, validation, mechanisms, settlement and result shares) without child processes,
links or certificates, so a test can compare the protocol's arithmetic with the plaintext
reference in a fraction of a second. It shows no secrecy (the one party holds every value) and
no communication: what only several parties show (resharing degrees, links, TLS, faults) stays
with mpc_market.mpc.local's node processes.
"""

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from typing import Any

from ..common.errors import EngineError, MarketError
from ..market.book import Book
from ..market.results import ClearingResult, SettlementResult
from .jobs import ORDERS_PER_CHUNK, JobDir


def single_party_runtime() -> Any:
    """This process's MPyC runtime, set up for one party if mpyc.runtime is not imported yet.

    Returns:
        mpyc.runtime.mpc (MPyC has no type information: Any).

    Raises:
        EngineError: the runtime was already set up for several parties.
    """
    if 'mpyc.runtime' not in sys.modules:
        from .node import STATISTICAL_SECURITY
        argv = sys.argv
        sys.argv = [argv[0] if argv else 'mpc-market', '--no-log', '-K', str(STATISTICAL_SECURITY)]
        try:  # MPyC configures itself from sys.argv at import: not from the caller's options
            from mpyc.runtime import mpc
        finally:
            sys.argv = argv
    from mpyc.runtime import mpc
    if len(mpc.parties) != 1:
        raise EngineError(f'this process runs MPyC with {len(mpc.parties)} parties, not one')
    return mpc


def clear_in_process(book: Book, net_of: dict | None = None, chunk: int = ORDERS_PER_CHUNK,
                     allocation: str = 'merit-order', workdir: str | None = None) -> ClearingResult:
    """Clear (and with net_of, settle) the book with one MPC party in this process.

    Args:
        book: the orders and market.
        net_of: meter readings {(participant, slot): net Wh} to settle in the same run, or None.
        chunk: orders streamed at once (small values exercise the chunked paths).
        allocation: the double auction's registered rule (mpc_market.mpc.mechanism).
        workdir: where the temporary job directory goes.

    Returns:
        The ClearingResult, as mpc_market.mpc.local.clear_mpc returns it (stats['nodes'] == 1).

    Raises:
        EngineError: the party failed or the runtime has several parties.
        BadParameter: the market is too large or names no registered mechanism.
    """
    from .local import clearing_spec, job_result, mark_ready, share_packages
    from .node import parse_args, run_party
    mpc = single_party_runtime()
    started = time.perf_counter()
    job_dir = tempfile.mkdtemp(prefix='mpc-market-job-', dir=workdir)
    try:
        spec = clearing_spec(book, 1, chunk, allocation, net_of)
        spec.save(job_dir)
        share_packages(book, spec, job_dir, net_of)
        shared = time.perf_counter()
        mark_ready(job_dir, 1)
        args: argparse.Namespace = parse_args(['--job', job_dir, '--index', '0', '--parties', 'in-process',
                                               '--keys', job_dir])
        try:
            mpc.run(run_party(mpc, args, spec, JobDir(job_dir).node(0), mpc.start, report=lambda line: None))
        except MarketError:  # already typed (BadParameter, Tampered, ...): the caller sees its class
            raise
        except (ArithmeticError, LookupError, TypeError, ValueError) as exc:
            raise EngineError(f'the in-process party failed: {type(exc).__name__}: {exc}') from exc
        result = job_result(book, job_dir, spec, (started, shared, time.perf_counter()))
        return replace(result, stats=dict(result.stats, engine='mpc-in-process'))
    finally:
        shutil.rmtree(job_dir, ignore_errors=True)


def settle_in_process(book: Book, net_of: dict, chunk: int = ORDERS_PER_CHUNK) -> SettlementResult:
    """Clear and settle the book with one MPC party in this process (see clear_in_process).

    Args:
        book: the orders and market; its extra pairs cover every reading.
        net_of: meter readings {(participant, slot): net Wh}.
        chunk: orders streamed at once.

    Returns:
        The SettlementResult, as mpc_market.mpc.local.settle_mpc returns it.

    Raises:
        EngineError: the party failed or the runtime has several parties.
    """
    from .local import settled_result
    return settled_result(book, net_of, clear_in_process(book, net_of, chunk))

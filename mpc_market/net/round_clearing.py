"""One clearing run of a deployed market node over the packages in its store.

The node daemon exports the round's accepted order packages to a private run directory, starts
the MPyC party (``mpc_market.mpc.node --deployment --ssl``) as a child process and watches it:
start-up must finish (all peers connected over TLS) within connect_timeout_s and the whole run
within clearing_timeout_s; a lost peer ends the child at once. On success the run's result
shares and public outputs are turned into rows for the store; on failure ClearingFailed says why.
The inputs are the stored shares, so a re-run after a failure or restart gives the same result.
"""

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
from cryptography.hazmat.primitives.asymmetric import ed25519

from ..common.errors import EngineError
from ..common.names import path_token
from ..market.config import MarketConfig, parse_config
from ..market.flex import clear_flex_plain
from ..market.results import public_slot_rows
from ..market.settlement import deviation_price2
from ..mpc.jobs import DETERMINISTIC_EXIT, JobDir, PublicOutputs, config_spec, write_packages
from ..mpc.supervisor import PartyProcess, supervise
from .config import NodeConfig
from .flexround import flex_job_spec, flex_public_body, outcomes_of, round_market
from .messages import PUBLIC_DOMAIN, public_body
from .store import Round, Store

OnStart = Callable[[subprocess.Popen[bytes]], None]  # told the party's process once it started (tests)
Rows = dict[str, tuple[str, bytes]]  # {participant: (status, result shares)}


class ClearingFailed(EngineError):
    """A clearing run that did not complete; the message is the round's failure reason.

    final: the failure is deterministic (the party process refused the job or hit a bug), so a
    rerun would fail the same way; otherwise (a lost link, a timeout) the broker reruns the round.
    """

    def __init__(self, message: str, final: bool = False):
        super().__init__(message)
        self.final = final



def export_job(store: Store, round_: Round, index: int, nodes: int, keys_dir: str,
               job_dir: str) -> tuple[MarketConfig, int]:
    """Write job.json, this node's packages (sorted by participant) and the held envelopes' digests.

    Args:
        store: this node's store.
        round_: the round to clear.
        index: this node's index.
        nodes: how many nodes.
        keys_dir: the deployment's keys (the party reads its TLS files there itself).
        job_dir: the run's fresh private directory.

    Returns:
        (the round's market config, how many participants' packages were written).

    Raises:
        InputError: the round's market text does not parse (it did when the round opened).
    """
    config = parse_config(f'round {round_.round_id}', round_.market_toml)
    submissions = store.submissions(round_.round_id, 'order')
    held = {p: hashlib.sha256(envelope).hexdigest() for p, (_, envelope, _, _) in submissions.items()}
    if round_.flex_requests:  # offers in the orders' layout, cleared by the 'flex' mechanism over the held set
        market = round_market(round_.round_id, round_.market_toml, round_.flex_requests)
        base = flex_job_spec(market, sorted(held), nodes)
    else:
        base = config_spec(config, round_.slots, nodes)
    spec = replace(base, mode='deployment', round_id=round_.round_id)
    spec.save(job_dir)
    own = JobDir(job_dir).node(index).make()
    write_packages(own.shares, [submissions[p][3] for p in sorted(held)], (len(round_.slots), spec.layout.width))
    own.write_held(held)
    own.mark_ready()
    return config, len(held)



def run_party(job_dir: str, index: int, mpc_addresses: Sequence[str], keys_dir: str, connect_timeout: float,
              clearing_timeout: float, on_start: OnStart | None = None, extra_args: Sequence[str] = ()) -> None:
    """Run the MPyC party child under the supervisor until it ends.

    Args:
        job_dir: the exported run directory.
        index: this node's index.
        mpc_addresses: every party's MPyC host:port.
        keys_dir: the deployment's keys.
        connect_timeout: seconds for all peers to connect.
        clearing_timeout: seconds for the whole run.
        on_start: called with the child process once started.
        extra_args: more party arguments (``--settle-only``).

    Raises:
        ClearingFailed: the party did not connect in time, timed out or failed (final if deterministic).
    """
    party = PartyProcess([sys.executable, '-m', 'mpc_market.mpc.node', '--job', job_dir, '--index', str(index),
                          '--parties', ','.join(mpc_addresses), '--deployment', '--keys', keys_dir, *extra_args],
                         JobDir(job_dir).party_log, cwd=job_dir,
                         env=dict(os.environ, MPC_MARKET_PARENT_PID=str(os.getpid())))
    if on_start:
        on_start(party.process)
    failure = supervise([party], clearing_timeout, connect_timeout)
    if failure is None:
        return
    if failure.kind == 'connect':
        raise ClearingFailed(f'node {index}: could not connect to all nodes within {connect_timeout:g} s')
    if failure.kind == 'timeout':
        raise ClearingFailed(f'node {index}: clearing timed out after {clearing_timeout:g} s')
    raise ClearingFailed(f'node {index}: {party.last_error() or f"MPC party exited with status {failure.returncode}"}',
                         final=failure.returncode == DETERMINISTIC_EXIT)


def import_results(job_dir: str, index: int, round_id: str, config: MarketConfig, flex_requests: str = '',
                   config_text: str = '') -> tuple[Rows, str, dict[str, float], list[int]]:
    """What a finished run left in its directory.

    Args:
        job_dir: the run directory.
        index: this node's index.
        round_id: the round.
        config: its market config.
        flex_requests, config_text: a flexibility round's requests CSV and market text ('': energy).

    Returns:
        ({participant: (status, shares bytes)}, public body, run figures, deviation price2 per slot).
    """
    own = JobDir(job_dir).node(index)
    public = own.read_public()
    results = np.load(own.results)
    excluded = set(public.excluded)
    rows = {p: ('excluded' if p in excluded else 'cleared', results[:, j].astype('<u4').tobytes())
            for j, p in enumerate(public.participants)}
    rows.update({p: ('missing', b'') for p in public.missing})
    if flex_requests:  # per request procured, price, shortfall; no deviation prices (not settled yet)
        market = round_market(round_id, config_text, flex_requests)
        body = flex_public_body(round_id, outcomes_of(market, public), len(public.participants) - len(excluded),
                                len(excluded), len(public.missing))
        return rows, body, run_figures(public), []
    price2 = [deviation_price2(config, row) for row in public_slot_rows(config, public.slots)]
    return rows, public_body(round_id, config, public), run_figures(public), price2


def run_figures(public: PublicOutputs) -> dict[str, float]:
    """What a run cost (its PublicOutputs' figures), flat.

    Args:
        public: the run's public outputs.

    Returns:
        Seconds per phase, plus mpc_tls (a bool), bytes_sent and peak_rss_mb.
    """
    figures = public.figures
    return dict(figures.timings, mpc_tls=figures.mpc_tls, bytes_sent=figures.bytes_sent,
                peak_rss_mb=figures.peak_rss_mb)



def clear_round(store: Store, round_: Round, node: NodeConfig, signing_key: ed25519.Ed25519PrivateKey,
                on_start: OnStart | None = None) -> dict[str, float]:
    """Run one clearing attempt for the round and store its results (state 'cleared').

    Args:
        store: this node's store.
        round_: the round (its attempts number the run directory).
        node: this node's config.
        signing_key: signs the public results.
        on_start: called with the party's process once started.

    Returns:
        The run's figures (see run_figures).

    Raises:
        ClearingFailed: the run failed (see run_party).
    """
    if round_.energy_round:  # activations its energy round's settlement never sees must not be published
        energy = store.round(round_.energy_round)
        if energy.settlement in ('settling', 'settled') or (energy.state == 'failed' and energy.final):
            raise ClearingFailed(f'its energy round {round_.energy_round} is {energy.settlement or energy.state}: '
                                 'activations could no longer be delivered', final=True)
        if energy.state != 'cleared':  # the baselines must be final before anyone learns an activation
            raise ClearingFailed(f'its energy round {round_.energy_round} is {energy.state}, not cleared yet')
    job_dir = os.path.join(node.data_dir, 'runs', f'{path_token(round_.round_id)}.{round_.attempts}')
    shutil.rmtree(job_dir, ignore_errors=True)
    os.makedirs(job_dir)
    try:
        if round_.flex_requests and not store.submissions(round_.round_id, 'order'):
            return clear_empty_flex(store, round_, signing_key)
        config, _ = export_job(store, round_, node.index, len(node.nodes), node.keys, job_dir)
        run_party(job_dir, node.index, node.mpc, node.keys, node.connect_timeout_s, node.clearing_timeout_s, on_start)
        rows, body, timings, price2 = import_results(job_dir, node.index, round_.round_id, config,
                                                     round_.flex_requests, round_.market_toml)
        store.put_results(round_.round_id, rows, body, signing_key.sign(PUBLIC_DOMAIN + body.encode()), price2)
        return timings
    finally:
        shutil.rmtree(job_dir, ignore_errors=True)  # the shares live in the store; no stray copies



def clear_empty_flex(store: Store, round_: Round, signing_key: ed25519.Ed25519PrivateKey) -> dict[str, float]:
    """A flexibility round without offers: every request procures nothing (nothing secret to compute).

    Args:
        store: this node's store.
        round_: the round.
        signing_key: signs the public results.

    Returns:
        No figures.
    """
    market = round_market(round_.round_id, round_.market_toml, round_.flex_requests)
    body = flex_public_body(round_.round_id, clear_flex_plain(market).requests, 0, 0, 0)
    store.put_results(round_.round_id, {}, body, signing_key.sign(PUBLIC_DOMAIN + body.encode()), [])
    return {}

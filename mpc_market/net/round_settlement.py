"""One settlement run of a deployed market node: a second MPC session after clearing.

At the readings deadline the node exports, to a private run directory, the order packages it
stored at clearing for the clearing's participants (never anything submitted later: the gate
closed), the reading packages it holds, and the clearing's public verdicts and deviation prices;
then the MPyC party runs ``mpc_market.mpc.node --settle-only --deployment``. The nodes agree on
the reading envelopes all of them hold; the rest are settled by the missing-reading rule. Every
participant's settlement shares, the retailer's shares and the signed public settlement body
(counts only) are stored in one transaction. A re-run after a failure or restart uses the same
stored packages and gives the same results.
"""

import hashlib
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
from cryptography.hazmat.primitives.asymmetric import ed25519

from ..common.names import path_token
from ..market.book import Layout, ReadingLayout
from ..market.config import parse_config
from ..mpc import field as ff
from ..mpc.jobs import ClearingVerdicts, JobDir, PublicOutputs, config_spec
from .config import NodeConfig
from .messages import SETTLEMENT_DOMAIN, settlement_body
from .round_clearing import OnStart, Rows, run_figures, run_party
from .store import Round, Store

SETTLEMENT_FIELDS = 2  # per participant and slot: deviation Wh, deviation amount
RETAILER_FIELDS = 3    # per slot: receives, pays, net



def _packages(path: str, submissions: Mapping[str, tuple[str, bytes, bytes, bytes]], participants: Sequence[str],
              shape: tuple[int, ...]) -> None:
    """Write the participants' stored packages as one limb-major array (4, n, *shape)."""
    out = np.lib.format.open_memmap(path, mode='w+', dtype=np.uint32, shape=(ff.LIMBS, len(participants), *shape))
    for row, participant in enumerate(participants):
        out[:, row] = np.frombuffer(submissions[participant][3], dtype='<u4').reshape(ff.LIMBS, *shape)
    out.flush()



def export_settlement_job(store: Store, round_: Round, index: int, nodes: int, job_dir: str) -> None:
    """Write job.json, clearing.json, this node's order and reading packages and held.json (reading envelopes).

    Args:
        store: this node's store.
        round_: the cleared round to settle.
        index: this node's index.
        nodes: how many nodes.
        job_dir: the run's fresh private directory.

    Raises:
        InputError: the round's market text does not parse (it did when the round opened).
    """
    config = parse_config(f'round {round_.round_id}', round_.market_toml)
    slots = len(round_.slots)
    spec = replace(config_spec(config, round_.slots, nodes), mode='deployment', round_id=round_.round_id,
                   settle=True, max_reading_wh=config.max_reading_wh)
    spec.save(job_dir)
    statuses = store.result_statuses(round_.round_id)
    in_clearing = sorted(p for p, status in statuses.items() if status in ('cleared', 'excluded'))
    JobDir(job_dir).write_verdicts(ClearingVerdicts(
        participants=in_clearing, cleared=sorted(p for p in in_clearing if statuses[p] == 'cleared'),
        deviation_price2=list(round_.deviation_price2)))
    own = JobDir(job_dir).node(index).make()
    _packages(own.shares, store.submissions(round_.round_id, 'order'), in_clearing,
              (slots, Layout.for_config(config).width))
    readings = store.submissions(round_.round_id, 'readings')
    _packages(own.readings, readings, sorted(readings),
              (slots, ReadingLayout.for_config(config).width))
    own.write_held({p: hashlib.sha256(envelope).hexdigest() for p, (_, envelope, _, _) in readings.items()})
    own.mark_ready()



def participant_status(participant: str, public: PublicOutputs) -> str:
    """A participant's settlement status: how its deviations were settled.

    Args:
        participant: one of the settlement's participants.
        public: the settlement run's public outputs.

    Returns:
        'excluded', 'missing-reading', 'invalid-reading' or 'metered'.
    """
    if participant in public.order_excluded:
        return 'excluded'  # its orders were invalid: they settle with the retailer, no deviation
    if participant in public.missing_readings:
        return 'missing-reading'
    if participant in public.meter_excluded:
        return 'invalid-reading'
    return 'metered'



def import_settlement(job_dir: str, index: int, round_id: str) -> tuple[Rows, bytes, str, dict[str, float]]:
    """What a finished settlement run left in its directory.

    Args:
        job_dir: the run directory.
        index: this node's index.
        round_id: the round.

    Returns:
        ({participant: (status, shares)}, retailer shares, public body, run figures).
    """
    own = JobDir(job_dir).node(index)
    public = own.read_public()
    settled = np.load(own.settlement)
    retailer = np.load(own.retailer)
    rows = {p: (participant_status(p, public), settled[:, j].astype('<u4').tobytes())
            for j, p in enumerate(public.participants)}
    return (rows, retailer.astype('<u4').tobytes(), settlement_body(round_id, public),
            run_figures(public))



def settle_round(store: Store, round_: Round, node: NodeConfig, signing_key: ed25519.Ed25519PrivateKey,
                 on_start: OnStart | None = None) -> dict[str, float]:
    """Run one settlement attempt for the round and store its results (the round is then settled).

    Args:
        store, node, on_start: as for round_clearing.clear_round.
        round_: the cleared round (its settle_attempts number the run directory).
        signing_key: signs the public settlement body.

    Returns:
        The run's figures (see round_clearing.run_figures).

    Raises:
        ClearingFailed: the run failed (see round_clearing.run_party).
    """
    job_dir = os.path.join(node.data_dir, 'runs', f'{path_token(round_.round_id)}.settle.{round_.settle_attempts}')
    shutil.rmtree(job_dir, ignore_errors=True)
    os.makedirs(job_dir)
    try:
        export_settlement_job(store, round_, node.index, len(node.nodes), job_dir)
        run_party(job_dir, node.index, node.mpc, node.keys, node.connect_timeout_s, node.clearing_timeout_s, on_start,
                  extra_args=('--settle-only',))
        rows, retailer, body, timings = import_settlement(job_dir, node.index, round_.round_id)
        store.put_settlement(round_.round_id, rows, retailer, body, signing_key.sign(SETTLEMENT_DOMAIN + body.encode()))
        return timings
    finally:
        shutil.rmtree(job_dir, ignore_errors=True)  # the shares live in the store; no stray copies

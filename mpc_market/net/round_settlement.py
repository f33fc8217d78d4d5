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
from dataclasses import dataclass, replace

import numpy as np
from cryptography.hazmat.primitives.asymmetric import ed25519

from ..common.names import path_token
from ..market.book import Layout, ReadingLayout
from ..market.config import parse_config
from ..mpc.jobs import ClearingVerdicts, JobDir, NodeFiles, PublicOutputs, config_spec, write_packages
from .config import NodeConfig
from .messages import SETTLEMENT_DOMAIN, settlement_body
from .round_clearing import OnStart, Rows, run_figures, run_party
from .store import Round, Store

SETTLEMENT_FIELDS = 2  # per participant and slot: deviation Wh, deviation amount
RETAILER_FIELDS = 3    # per slot: receives, pays, net



def export_settlement_job(store: Store, round_: Round, index: int, nodes: int, job_dir: str,
                          flex: Round | None = None) -> None:
    """Write job.json, clearing.json, this node's order and reading packages and held.json (reading
    envelopes); with a cleared flexibility round also the delivery plan and its result shares.

    Args:
        store: this node's store.
        round_: the cleared round to settle.
        index: this node's index.
        nodes: how many nodes.
        job_dir: the run's fresh private directory.
        flex: the round's cleared flexibility round (its activations are delivered), or None.

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
    orders = store.submissions(round_.round_id, 'order')
    write_packages(own.shares, [orders[p][3] for p in in_clearing], (slots, Layout.for_config(config).width))
    readings = store.submissions(round_.round_id, 'readings')
    write_packages(own.readings, [readings[p][3] for p in sorted(readings)],
                   (slots, ReadingLayout.for_config(config).width))
    own.write_held({p: hashlib.sha256(envelope).hexdigest() for p, (_, envelope, _, _) in readings.items()})
    if flex is not None:
        export_delivery(store, round_, flex, JobDir(job_dir), own)
    own.mark_ready()


def export_delivery(store: Store, round_: Round, flex: Round, job: JobDir, own: NodeFiles) -> None:
    """The delivery plan of a settlement with a cleared flexibility round, and this node's result
    shares of that round's participants (those it cleared or excluded), limb-major
    (4, participants, flexibility slots, FIELDS).

    Args:
        store: this node's store.
        round_: the energy round being settled.
        flex: its cleared flexibility round.
        job: the settlement's job directory.
        own: this node's files in it.

    Raises:
        EngineError: a stored result is not of the flexibility round's shape (a bug).
    """
    from ..mpc.flex import FIELDS, DeliveryPlan
    statuses = store.result_statuses(flex.round_id)
    participants = sorted(p for p, status in statuses.items() if status in ('cleared', 'excluded'))
    stored = [store.results(flex.round_id, p) for p in participants]
    write_packages(own.flex_shares, [r[1] if r else b'' for r in stored], (len(flex.slots), len(FIELDS)))
    public = store.public_results(flex.round_id)
    DeliveryPlan(participants, list(flex.slots), list(round_.deviation_price2), flex.round_id,
                 hashlib.sha256(public[0].encode() if public else b'').hexdigest()).save(job)



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



@dataclass(frozen=True)
class SettlementRun:
    """What a finished settlement run left in its directory: per participant (status, settlement
    shares) and, with a flexibility round, (status, delivery shares); the retailer's shares, the
    public body and the run's figures."""

    rows: Rows
    delivery: Rows | None
    retailer: bytes
    body: str
    figures: dict[str, float]


def import_settlement(job_dir: str, index: int, round_id: str, flex_round: str = '') -> SettlementRun:
    """What a finished settlement run left in its directory.

    Args:
        job_dir: the run directory.
        index: this node's index.
        round_id: the round.
        flex_round: the flexibility round it delivered ('' none).

    Returns:
        The SettlementRun.
    """
    own = JobDir(job_dir).node(index)
    public = own.read_public()
    settled = np.load(own.settlement)
    retailer = np.load(own.retailer)
    status = {p: participant_status(p, public) for p in public.participants}

    def per_participant(shares: np.ndarray) -> Rows:  # (4, participants, ...) -> {participant: (status, bytes)}
        return {p: (status[p], shares[:, j].astype('<u4').tobytes()) for j, p in enumerate(public.participants)}
    return SettlementRun(per_participant(settled), per_participant(np.load(own.delivery)) if flex_round else None,
                         retailer.astype('<u4').tobytes(), settlement_body(round_id, public, flex_round),
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
    flex = store.flex_round_of(round_.round_id)
    flex = flex if flex is not None and flex.state == 'cleared' else None  # a failed one delivered nothing
    try:
        export_settlement_job(store, round_, node.index, len(node.nodes), job_dir, flex)
        run_party(job_dir, node.index, node.mpc, node.keys, node.connect_timeout_s, node.clearing_timeout_s, on_start,
                  extra_args=('--settle-only',))
        run = import_settlement(job_dir, node.index, round_.round_id, flex.round_id if flex else '')
        store.put_settlement(round_.round_id, run.rows, run.retailer, run.body,
                             signing_key.sign(SETTLEMENT_DOMAIN + run.body.encode()), run.delivery)
        return run.figures
    finally:
        shutil.rmtree(job_dir, ignore_errors=True)  # the shares live in the store; no stray copies

"""The files a clearing job hands each market node, and what each node hands back.

A job directory holds ``job.json`` (public parameters only) and, per node i, ``node{i}/``
with that node's share packages (``shares.npy``: limb-major uint32 array of shape
(4, participants, slots, width)), the participants whose packages it holds
(``held.json``), and after the run its result shares (``results.npy``, shape
(4, participants, slots, 3) for matched, unmatched and amount; 5 with local and cross-zone Wh in
a zoned market) and ``public.json``.
"""

import json
import os
from dataclasses import asdict, dataclass, field

import numpy as np

# the party process's exit status for a deterministic failure (a job it refuses, a bug): a rerun
# would fail the same way, so the daemon reports it once and the broker does not retry it
DETERMINISTIC_EXIT = 70  # EX_SOFTWARE (sysexits.h); 3 is a lost peer (mpyc_internals)

RESULT_FIELDS = ('matched_wh', 'unmatched_wh', 'amount')
ZONED_RESULT_FIELDS = RESULT_FIELDS + ('local_wh', 'cross_wh')


def result_fields(config):
    """Values per order in the result shares: 5 in a zoned market, else 3."""
    return len(ZONED_RESULT_FIELDS if config.zoned else RESULT_FIELDS)


@dataclass
class JobSpec:
    """Public parameters of a clearing job (what every node may know)."""

    nodes: int
    threshold: int
    levels: int
    energy_bits: int
    max_order_wh: int
    floor_units: int
    ceiling_units: int
    tick_units: int
    participants: list = field(default_factory=list)
    slots: list = field(default_factory=list)
    chunk: int = 4096
    mode: str = 'local'
    mechanism: str = 'double-auction'
    settle: bool = False        # meter packages present: settle deviations after clearing
    max_reading_wh: int = 65535
    round_id: str = ''          # a deployment round: bound into the nodes' signed statements
    zone_names: list = field(default_factory=list)  # zoned market: the zones (public)
    zone_of: dict = field(default_factory=dict)     # participant -> zone (public grid connection)
    fee_levels: int = 0         # the network fee in ticks
    fee_units: int = 0          # the network fee in price units
    committee: list = field(default_factory=list)   # S1: participant index of each node

    def save(self, directory):
        os.makedirs(directory, exist_ok=True)
        write_json(os.path.join(directory, 'job.json'), asdict(self))

    @classmethod
    def load(cls, directory):
        with open(os.path.join(directory, 'job.json')) as f:
            return cls(**json.load(f))


def node_dir(directory, index):
    return os.path.join(directory, f'node{index}')


def write_json(path, obj):
    """Write JSON atomically (temp file + rename), so readers never see half a file."""
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def save_array(path, array):
    tmp = path + '.tmp.npy'
    np.save(tmp, array)
    os.replace(tmp, path)


def job_spec(book, nodes, chunk):
    """Public job parameters; chunk = orders (participant x slot vectors) streamed at once."""
    spec = config_spec(book.config, book.slots, nodes, max(1, chunk // max(1, len(book.slots))))
    spec.participants = book.participants
    if book.config.zoned:
        spec.zone_names, spec.zone_of = list(book.zones), dict(book.zone_of)
    return spec



def config_spec(config, slots, nodes, chunk):
    """Job parameters of a market config and slots (participants still to be filled in)."""
    return JobSpec(nodes=nodes, threshold=(nodes - 1) // 2, levels=config.levels,
                   energy_bits=config.energy_bits, max_order_wh=config.max_order_wh,
                   floor_units=config.floor_units, ceiling_units=config.ceiling_units,
                   tick_units=config.price_units(config.tick),
                   participants=[], slots=list(slots), chunk=chunk, mechanism=config.mechanism,
                   zone_names=config.zone_names if config.zoned else [],
                   zone_of=dict(config.zone_of) if config.zoned else {},
                   fee_levels=config.fee_levels if config.zoned else 0, fee_units=config.fee_units if config.zoned else 0)

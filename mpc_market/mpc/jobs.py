"""The files a clearing job hands each market node, and what each node hands back.

A job directory (``JobDir``) holds ``job.json`` (``JobSpec``: public parameters only), for a
settle-only session ``clearing.json`` (``ClearingVerdicts``), and per node i ``node{i}/``
(``NodeFiles``) with that node's share packages (``shares.npy``: limb-major uint32 array of shape
(4, participants, slots, width)), the participants whose packages it holds (``held.json``), and
after the run its result shares (``results.npy``, shape (4, participants, slots, 3) for matched,
unmatched and amount; 5 with local and cross-zone Wh in a zoned market) and ``public.json``
(``PublicOutputs``). Only this module names those files; everything that crosses the process
boundary is one of these frozen dataclasses with one ``to_json``/``from_json``.
"""

import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np

from ..common.errors import EngineError
from ..market.book import Book, Layout
from ..market.config import MarketConfig

# orders (participant x slot vectors) a party streams through the secure computation at once;
# divided by the number of slots for the participants per chunk
ORDERS_PER_CHUNK = 8192

# the party process's exit status for a deterministic failure (a job it refuses, a bug): a rerun
# would fail the same way, so the daemon reports it once and the broker does not retry it
DETERMINISTIC_EXIT = 70  # EX_SOFTWARE (sysexits.h); 3 is a lost peer (mpyc_internals)

RESULT_FIELDS = ('matched_wh', 'unmatched_wh', 'amount')
ZONED_RESULT_FIELDS = RESULT_FIELDS + ('local_wh', 'cross_wh')

Progress = Callable[[str, int, int], None]   # (phase, done, total): node 0 reports it to the engine
# held.json: a deployment's {participant: SHA-256 of its envelope}; a local run's participants
Held = dict[str, str] | list[str]


def result_fields(config: MarketConfig) -> int:
    """Values per order in the result shares: 5 in a zoned market, else 3."""
    return len(ZONED_RESULT_FIELDS if config.zoned else RESULT_FIELDS)


@dataclass(frozen=True)
class JobSpec:
    """Public parameters of a clearing job (what every node may know); derive a variant with
    ``dataclasses.replace``."""

    nodes: int
    threshold: int
    levels: int
    energy_bits: int
    max_order_wh: int
    floor_units: int
    ceiling_units: int
    tick_units: int
    chunk: int                  # participants whose orders are streamed at once (ORDERS_PER_CHUNK // slots)
    participants: list = field(default_factory=list)
    slots: list = field(default_factory=list)
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
    allocation: str = 'merit-order'  # the double auction's rule (mpc_market.mpc.mechanism); 'pro-rata': benchmarks
    flex: dict = field(default_factory=dict)  # allocation 'flex': the public FlexPlan (mpc_market.mpc.flex)
    feeder_min_cohort: int = 0  # > 0 (zoned): open each zone's planned net position where this many count

    @property
    def layout(self) -> Layout:
        """The layout of the job's order vectors (its levels: a flexibility job's may be fewer than
        its market's)."""
        return Layout(self.levels, self.energy_bits, self.max_order_wh)

    def save(self, directory: str) -> None:
        """Write job.json into directory (created if needed)."""
        JobDir(directory).save_spec(self)

    @classmethod
    def load(cls, directory: str) -> 'JobSpec':
        """The JobSpec of directory's job.json."""
        return JobDir(directory).load_spec()


@dataclass(frozen=True)
class RunFigures:
    """What a party's run cost: seconds per phase, TLS, bytes and messages sent, peak memory."""

    timings: dict
    mpc_tls: bool = False
    bytes_sent: int = 0
    messages_per_link: int = 0
    peak_rss_mb: float = 0.0
    peak_rss_mb_by_phase: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PublicOutputs:
    """What a party opened in a run (identical at every party): public.json.

    slots: per slot the mechanism's opened values (``market.results.public_slot_rows`` reads them);
    excluded / missing: participants whose orders were invalid / not held by every node;
    participants: those in the run (a deployment's agreed set; settlement: everyone settled);
    meter_excluded / missing_readings / order_excluded: the settlement's verdicts;
    feeders: the released per-zone planned net positions (market.feeders).
    """

    slots: list
    excluded: list
    missing: list
    participants: list
    figures: RunFigures
    meter_excluded: list = field(default_factory=list)
    missing_readings: list = field(default_factory=list)
    order_excluded: list = field(default_factory=list)
    feeders: list = field(default_factory=list)  # FeederPosition.to_json() per released zone and slot

    def to_json(self) -> dict:
        """The JSON object of public.json."""
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict) -> 'PublicOutputs':
        """Parse a public.json object.

        Raises:
            KeyError, TypeError: it is not one (a party wrote nothing else; a job dir is private).
        """
        return cls(**dict(obj, figures=RunFigures(**obj['figures'])))

    def differs_from(self, other: 'PublicOutputs') -> bool:
        """Whether two parties opened different public values (their figures may differ)."""
        opened = [f.name for f in fields(self) if f.name != 'figures']
        return [getattr(self, n) for n in opened] != [getattr(other, n) for n in opened]


@dataclass(frozen=True)
class ClearingVerdicts:
    """clearing.json: what a settle-only session takes from the clearing before it.

    participants: whose order shares are in shares.npy (a deployment: cleared or excluded; None in a
    local run: the job's participants); cleared: those whose orders were valid; deviation_price2:
    twice each slot's deviation price in units.
    """

    cleared: list
    deviation_price2: list
    participants: list | None = None

    def to_json(self) -> dict:
        """The JSON object of clearing.json."""
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict) -> 'ClearingVerdicts':
        """Parse a clearing.json object."""
        return cls(**obj)


@dataclass(frozen=True)
class NodeFiles:
    """Party i's files in a job directory (node{i}/): its inputs, its outputs and the ready flag."""

    path: str

    def _file(self, name: str) -> str:
        return os.path.join(self.path, name)

    shares = property(lambda self: self._file('shares.npy'))          # order share packages
    readings = property(lambda self: self._file('readings.npy'))      # reading share packages
    held = property(lambda self: self._file('held.json'))             # whose packages it holds
    results = property(lambda self: self._file('results.npy'))        # result shares
    settlement = property(lambda self: self._file('settlement.npy'))  # settlement shares
    retailer = property(lambda self: self._file('retailer.npy'))      # the retailer's shares
    public = property(lambda self: self._file('public.json'))         # PublicOutputs
    own_orders = property(lambda self: self._file('own_orders.npy'))    # S1: the committee peer's orders
    own_results = property(lambda self: self._file('own_results.npy'))  # S1: its own results
    flex_shares = property(lambda self: self._file('flex_results.npy'))  # delivery: the flex clearing's result shares
    delivery = property(lambda self: self._file('delivery.npy'))       # delivery: (delivered, payment, penalty, shift)
    delivery_public = property(lambda self: self._file('delivery_public.json'))  # delivery: whose packages failed
    log = property(lambda self: self._file('node.log'))               # a local run's party log
    ready = property(lambda self: self._file('ready'))                # the packages are complete

    def make(self) -> 'NodeFiles':
        """Create the directory (0700 like the job's); returns self."""
        os.makedirs(self.path, mode=0o700, exist_ok=True)
        return self

    def mark_ready(self) -> None:
        """Tell the waiting party its packages are complete."""
        with open(self.ready, 'w'):
            pass

    def is_ready(self) -> bool:
        return os.path.exists(self.ready)

    def unmark_ready(self) -> None:
        """A second session over the same directory: the party waits again."""
        if os.path.exists(self.ready):
            os.remove(self.ready)

    def write_held(self, held: Held) -> None:
        write_json(self.held, held)

    def read_held(self) -> Held:
        with open(self.held) as f:
            return json.load(f)

    def write_public(self, public: PublicOutputs) -> None:
        write_json(self.public, public.to_json())

    def read_public(self) -> PublicOutputs:
        with open(self.public) as f:
            return PublicOutputs.from_json(json.load(f))


@dataclass(frozen=True)
class JobDir:
    """A job directory: job.json, clearing.json, the parties' node{i}/, their TLS files and log."""

    path: str

    spec_file = property(lambda self: os.path.join(self.path, 'job.json'))
    verdicts_file = property(lambda self: os.path.join(self.path, 'clearing.json'))
    tls = property(lambda self: os.path.join(self.path, 'tls'))              # a local run's certificates
    party_log = property(lambda self: os.path.join(self.path, 'party.log'))  # a daemon's one party
    delivery_plan = property(lambda self: os.path.join(self.path, 'delivery.json'))  # a delivery session's plan

    def node(self, index: int) -> NodeFiles:
        """Party index's files."""
        return NodeFiles(os.path.join(self.path, f'node{index}'))

    def save_spec(self, spec: 'JobSpec') -> None:
        os.makedirs(self.path, exist_ok=True)
        write_json(self.spec_file, json_fields(spec))

    def load_spec(self) -> 'JobSpec':
        with open(self.spec_file) as f:
            return JobSpec(**json.load(f))

    def write_verdicts(self, verdicts: ClearingVerdicts) -> None:
        write_json(self.verdicts_file, verdicts.to_json())

    def read_verdicts(self) -> ClearingVerdicts:
        with open(self.verdicts_file) as f:
            return ClearingVerdicts.from_json(json.load(f))


def json_fields(obj: Any) -> dict[str, Any]:
    """A dataclass's fields by name, not copied: for dataclasses whose fields are JSON values
    already (asdict's deep copy of a flexibility plan's 1,920 requests took a quarter second).

    Args:
        obj: a dataclass instance.

    Returns:
        Its fields, the values themselves.
    """
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def write_json(path: str, obj: object) -> None:
    """Write JSON atomically (temp file + rename), so readers never see half a file."""
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def save_array(path: str, array: np.ndarray) -> None:
    tmp = path + '.tmp.npy'
    np.save(tmp, array)
    os.replace(tmp, path)


def write_packages(path: str, packages: Sequence[bytes], shape: tuple[int, ...]) -> None:
    """Write per-participant share blobs (little-endian uint32 limbs, each (LIMBS, *shape)) as one
    limb-major .npy array (LIMBS, participants, *shape), memory-mapped so a large round never sits
    in memory twice.

    Args:
        path: the .npy file.
        packages: one blob per participant, in row order.
        shape: each blob's shape after the limbs.

    Raises:
        EngineError: a blob is not of that shape (a corrupt store: not the participant's fault).
    """
    from . import field as ff
    out = np.lib.format.open_memmap(path, mode='w+', dtype=np.uint32, shape=(ff.LIMBS, len(packages), *shape))
    for row, package in enumerate(packages):
        values = np.frombuffer(package, dtype='<u4')
        if values.size != ff.LIMBS * int(np.prod(shape)):
            raise EngineError(f'a stored share package of {values.size} values for the shape {shape}')
        out[:, row] = values.reshape(ff.LIMBS, *shape)
    out.flush()


def job_spec(book: Book, nodes: int, chunk: int) -> JobSpec:
    """Public job parameters; chunk = orders (participant x slot vectors) streamed at once."""
    spec = config_spec(book.config, book.slots, nodes, chunk)
    spec = replace(spec, participants=list(book.participants))
    if book.config.zoned:
        spec = replace(spec, zone_names=list(book.zones), zone_of=dict(book.zone_of))
    return spec



def config_spec(config: MarketConfig, slots: Iterable[int], nodes: int,
                orders_per_chunk: int = ORDERS_PER_CHUNK) -> JobSpec:
    """Job parameters of a market config and slots (participants still to be filled in); the
    participants per chunk are orders_per_chunk (participant x slot vectors) over the slots."""
    slots = list(slots)
    chunk = max(1, orders_per_chunk // max(1, len(slots)))
    return JobSpec(nodes=nodes, threshold=(nodes - 1) // 2, levels=config.levels,
                   energy_bits=config.energy_bits, max_order_wh=config.max_order_wh,
                   floor_units=config.floor_units, ceiling_units=config.ceiling_units,
                   tick_units=config.price_units(config.tick),
                   participants=[], slots=slots, chunk=chunk, mechanism=config.mechanism,
                   zone_names=config.zone_names if config.zoned else [],
                   zone_of=dict(config.zone_of) if config.zoned else {},
                   fee_levels=config.fee_levels if config.zoned else 0,
                   fee_units=config.fee_units if config.zoned else 0,
                   feeder_min_cohort=config.feeder_min_cohort if config.zoned else 0)

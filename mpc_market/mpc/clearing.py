"""The secure clearing run by each market node, one MPyC party each: the node's view of a job
and the phases of a run.

Import only inside a node process: importing mpyc.runtime sets up the MPyC runtime from
sys.argv (see mpc_market.mpc.node).

Data stay as Shamir shares over GF(2^127 - 1) throughout. Bulk linear work happens on limb
arrays (mpc_market.mpc.field); MPyC secure arrays are used for the few non-linear steps:
one resharing and one zero test per participant for validation, K comparisons per slot for
the crossing, a long division per slot for the rationing ratio, and one floor per order for
the allocation (a cheap probabilistic truncation plus an exact one on bitlen(T)+4 bits). Only
verdicts, chosen levels, traded volumes and residuals are ever opened.

A run has phases, each a module that takes what it needs and returns what it computed: set
agreement and the joint seed (here), validation (mpc_market.mpc.validation), then the mechanism
the job names (mpc_market.mpc.mechanism: merit order, zones, pro rata, community schemes) built
on the crossing (mpc_market.mpc.crossing) and the allocation (mpc_market.mpc.allocation).

Every mpc.transfer here crosses only links that mpyc_internals.start authenticated (the peer's
certificate names the party it claims to be) and is decoded by mpc_market.mpc.wire, never pickle.
"""

import hashlib
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
from mpyc.runtime import mpc

from ..common.errors import EngineError, Tampered
from ..market.feeders import FeederPosition
from . import field as ff
from . import flex, merit_order, prorata, schemes, zones  # noqa: F401 - each registers its mechanism
from .allocation import side_energies
from .jobs import JobSpec, Progress
from .mechanism import Clearing, mechanism_for
from .primitives import P, commitment, peak_rss_mb, supply_demand
from .validation import validate_orders


@dataclass(frozen=True)
class ClearingRun:
    """What a node's clearing run computed: the mechanism's outputs and the validation verdicts.

    valid: per participant of the job whether its packages passed (public); excluded: held by every
    node but invalid; missing: not held by every node."""

    clearing: Clearing
    valid: np.ndarray
    excluded: list[str]
    missing: list[str]
    feeders: list[FeederPosition] = field(default_factory=list)  # released per-zone planned net positions


class MarketNode:
    """One market node's view of a clearing job: its share packages, public parameters and the
    joint public randomness; the phases of a run read it and never change it."""

    def __init__(self, spec: JobSpec, shares: np.ndarray, held: Iterable[str], progress: Progress | None = None):
        self.spec = spec
        self.layout = spec.layout
        self.shares = shares  # limb-major uint32 (4, participants, slots, width)
        self.held = set(held)
        self.n_participants = len(spec.participants)
        self.n_slots = len(spec.slots)
        self.timings: dict[str, float] = {}
        self.peaks: dict[str, float] = {}  # peak memory (MB) at the end of each phase
        self.seed: bytes | None = None
        self.progress: Progress = progress or (lambda phase, done, total: None)

    async def agree_seed(self) -> None:
        """Joint seed by commit-then-reveal: every node commits to its contribution before any is
        revealed, so no node can choose its own after seeing the others' (grinding the checks)."""
        mine = os.urandom(32)
        commitments = await mpc.transfer(commitment(mpc.pid, mine))
        contributions = await mpc.transfer(mine)
        for pid, (committed, contribution) in enumerate(zip(commitments, contributions, strict=True)):
            if not (isinstance(contribution, bytes) and len(contribution) == 32
                    and committed == commitment(pid, contribution)):
                raise Tampered(f'node {pid} revealed a seed contribution that does not match its commitment')
        self.seed = hashlib.sha256(b''.join(contributions)).digest()

    def coefficients(self, label: str, count: int) -> list[int]:
        """count public pseudorandom field elements derived from the joint seed.

        Raises:
            EngineError: no joint seed yet (a phase ran before agree_seed).
        """
        if self.seed is None:  # a phase out of order would draw from no seed at all
            raise EngineError('no joint seed yet: agree_seed runs first')
        stream = hashlib.shake_256(self.seed + label.encode()).digest(24 * count)
        return [int.from_bytes(stream[24 * i:24 * i + 24], 'little') % P for i in range(count)]

    async def agree_participants(self) -> np.ndarray:
        """Participants whose packages every node holds (others are left out of the market)."""
        held_sets = await mpc.transfer(sorted(self.held))
        common = set(held_sets[0]).intersection(*map(set, held_sets[1:]))
        return np.array([p in common for p in self.spec.participants], dtype=bool)

    def phase_timer(self) -> Callable[[str], None]:
        """A lap function: each call books the time since the previous one (and the peak memory)
        under the phase just ended."""
        clock = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            self.timings[name] = self.timings.get(name, 0.0) + now - clock
            clock = now
            self.peaks[name] = round(peak_rss_mb(), 1)
        return lap

    # -- the order shares, a chunk of participants at a time ------------------------------------
    def chunk(self, start: int, stop: int) -> np.ndarray:
        """Participants start..stop's order vectors as limbs (4, rows, width), a row per slot."""
        block = np.asarray(self.shares[:, start:stop], dtype=np.uint32)
        return block.reshape(ff.LIMBS, (stop - start) * self.n_slots, self.layout.width)

    def weighted_totals(self, valid: np.ndarray, group: np.ndarray | None = None, groups: int = 1) -> np.ndarray:
        """Shares of the weighted vectors summed over valid participants per group (group: each
        participant's index, e.g. its zone; default one group): (groups, slots, 2K+2)."""
        width = self.layout.weighted.stop - self.layout.weighted.start
        totals = np.zeros((groups, self.n_slots, width), dtype=object)
        for start in range(0, self.n_participants, self.spec.chunk):
            stop = min(start + self.spec.chunk, self.n_participants)
            block = np.asarray(self.shares[:, start:stop], dtype=np.uint32)[..., self.layout.weighted]
            for g in range(groups):
                members = valid[start:stop] if group is None else valid[start:stop] & (group[start:stop] == g)
                rows = np.flatnonzero(members)
                if rows.size:
                    totals[g] += ff.sum_rows(block[:, rows], axis=0)
        return totals % P

    def curves(self, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Shares of S(k) and D(k) per slot over valid participants: (slots, K) each."""
        k = self.layout.levels
        totals = self.weighted_totals(valid)[0]  # the 'out of band' columns stay out of the curves
        return supply_demand(totals[:, :k], totals[:, k:2 * k])

    def side_totals(self, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Shares of each slot's total sell and buy energy, all orders (limits ignored)."""
        sells, buys = side_energies(self.weighted_totals(valid)[0], self.layout.levels)
        return sells % P, buys % P

    def zone_index(self) -> np.ndarray:
        """Each participant's zone index in spec.zone_names (-1: not in any zone)."""
        index = {z: i for i, z in enumerate(self.spec.zone_names)}
        return np.array([index.get(self.spec.zone_of.get(p), -1) for p in self.spec.participants], dtype=np.int64)

    # -- whole run ---------------------------------------------------------------------------
    async def validate(self, present: np.ndarray) -> np.ndarray:
        """Valid-and-consistent verdict per participant (opened): mpc_market.mpc.validation."""
        return await validate_orders(self, present)

    async def run(self) -> ClearingRun:
        """Agree on the participants and the seed, validate, clear with the job's mechanism.

        Raises:
            Tampered: a node's seed contribution does not match its commitment.
            BadParameter: the job names no registered mechanism, or the market is too large.
        """
        mechanism = mechanism_for(self.spec)   # an unknown mechanism fails before any message
        lap = self.phase_timer()
        present = await self.agree_participants()
        await self.agree_seed()
        lap('input')
        valid = await self.validate(present)
        lap('validation')
        clearing = await mechanism.clear(self, valid, lap)
        feeders = []
        if self.spec.feeder_min_cohort and self.spec.zone_of:
            from .feeders import feeder_positions
            feeders = await feeder_positions(self, valid)
            lap('feeders')
        participants = self.spec.participants
        excluded = [p for p, ok, here in zip(participants, valid, present, strict=True) if here and not ok]
        missing = [p for p, here in zip(participants, present, strict=True) if not here]
        return ClearingRun(clearing, valid, excluded, missing, feeders)

"""The clearing mechanisms behind one interface, as gsy-framework's matching algorithms sit behind
one abstract method: a mechanism takes a node's validated order shares and returns what it cleared.

``MarketNode.run`` (mpc_market.mpc.clearing) validates the packages, picks the mechanism the job's
public parameters name (``mechanism_for``) and calls its ``clear``. Each implementation registers
itself under its name; a job names one through JobSpec.mechanism (a community pricing scheme),
JobSpec.zone_names (a zoned market) and JobSpec.allocation (the rule of the double auction).
"""

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np

from ..common.errors import BadParameter
from ..market.book import Layout
from .jobs import JobSpec

Lap = Callable[[str], None]   # records the time (and peak memory) of the phase just ended under its name


class OrderShares(Protocol):
    """What a mechanism reads of a node (mpc_market.mpc.clearing.MarketNode): its order shares in
    chunks of participants, the job's public parameters and the sums it can form without talking."""

    spec: JobSpec
    layout: Layout
    shares: np.ndarray          # limb-major uint32 (4, participants, slots, width)
    n_participants: int
    n_slots: int

    def progress(self, phase: str, done: int, total: int) -> None: ...

    def weighted_totals(self, valid: np.ndarray, group: np.ndarray | None = None, groups: int = 1) -> np.ndarray: ...

    def curves(self, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def side_totals(self, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def zone_index(self) -> np.ndarray: ...


@dataclass(frozen=True)
class Clearing:
    """What a mechanism computed.

    slots: the opened values per slot (PublicOutputs.slots); results: every order's result shares,
    limb-major uint32 (4, participants, slots, fields); deviation_price2: per slot 2 x the public
    price at which settlement values a deviation.
    """

    slots: list[dict[str, Any]]
    results: np.ndarray
    deviation_price2: list[int]


class Mechanism(ABC):
    """A clearing rule under MPC; its plaintext twin lives in mpc_market.market."""

    name: ClassVar[str]

    @abstractmethod
    async def clear(self, node: OrderShares, valid: np.ndarray, lap: Lap) -> Clearing:
        """Clear the node's order shares of the valid participants.

        Args:
            node: the node's shares and public parameters (spec, layout, chunks, joint seed).
            valid: per participant whether its packages passed validation (public).
            lap: called with a phase name ('clearing', 'allocation', 'output') as each ends.

        Returns:
            The opened per-slot values, every order's result shares and the deviation prices.
        """


_REGISTRY: dict[str, type[Mechanism]] = {}


def register(mechanism: type[Mechanism]) -> type[Mechanism]:
    """Class decorator: make ``mechanism`` available under its ``name``.

    Raises:
        BadParameter: another mechanism already holds the name.
    """
    if _REGISTRY.get(mechanism.name, mechanism) is not mechanism:
        raise BadParameter('mechanism', f'mechanism {mechanism.name!r} is registered twice')
    _REGISTRY[mechanism.name] = mechanism
    return mechanism


def mechanism_name(spec: JobSpec) -> str:
    """The registered name of the mechanism a job's public parameters ask for."""
    if spec.mechanism != 'double-auction':
        return 'community-scheme'
    return f'zoned-{spec.allocation}' if spec.zone_names else spec.allocation


def mechanism_for(spec: JobSpec) -> Mechanism:
    """The mechanism that clears ``spec``'s job.

    Raises:
        BadParameter: no mechanism is registered under the name the job asks for.
    """
    name = mechanism_name(spec)
    if name not in _REGISTRY:
        raise BadParameter('mechanism', f'no clearing mechanism {name!r} (registered: {", ".join(sorted(_REGISTRY))})')
    return _REGISTRY[name]()


def registered() -> list[str]:
    """The names of every registered mechanism, sorted."""
    return sorted(_REGISTRY)

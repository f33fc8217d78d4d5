"""Order encoding shared with the market nodes, and the book of orders it is built from.

Per (participant, slot) one vector of small integers:

  onehot  (2K+3)  1 at the order's sell level, or K + its buy level, or 2K / 2K+1 for a sell /
                  buy that cannot trade locally (limit outside the band), or 2K+2 for "no order";
  weighted (2K+2) the energy at the same position (no entry for "no order");
  bits     (B)    the energy in binary, B = bit length of max_order_wh;
  slack    (B)    only when max_order_wh < 2**B - 1: bits of max_order_wh - energy.

Every participant sends a vector for every slot of the file (zero orders where it has none),
so nodes learn neither sides nor participation. Orders that cannot trade locally sit at their
own hidden positions: they stay out of the curves but count in settlement (planned position).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..common.errors import BadParameter
from .config import MarketConfig
from .orders import Order


@dataclass(frozen=True)
class Layout:
    levels: int
    energy_bits: int
    max_order_wh: int

    @property
    def has_slack(self):
        return self.max_order_wh != (1 << self.energy_bits) - 1

    @property
    def onehot(self):
        return slice(0, 2 * self.levels + 3)

    @property
    def sell_out(self):
        """One-hot position of a sell that cannot trade locally (buy: sell_out + 1)."""
        return 2 * self.levels

    @property
    def no_order(self):
        return 2 * self.levels + 2

    @property
    def weighted(self):
        start = 2 * self.levels + 3
        return slice(start, start + 2 * self.levels + 2)

    @property
    def bits(self):
        start = 4 * self.levels + 5
        return slice(start, start + self.energy_bits)

    @property
    def slack(self):
        start = 4 * self.levels + 5 + self.energy_bits
        return slice(start, start + self.energy_bits if self.has_slack else start)

    @property
    def width(self):
        return self.slack.stop

    @classmethod
    def for_config(cls, config: MarketConfig, levels: int | None = None) -> Layout:
        """The config's layout (levels: fewer than its K, a flexibility job's FlexMarket.levels)."""
        return cls(config.levels if levels is None else levels, config.energy_bits, config.max_order_wh)


def encode_entry(layout, position, energy):
    """The vector of one order: position = sell level, K + buy level, 2K / 2K+1 (sell / buy that
    cannot trade locally), or None (no order)."""
    vector = np.zeros(layout.width, dtype=np.uint64)
    if position is None:
        vector[layout.no_order] = 1
        energy = 0
    else:
        vector[position] = 1
        vector[layout.weighted.start + position] = energy
    for i in range(layout.energy_bits):
        vector[layout.bits.start + i] = (energy >> i) & 1
    if layout.has_slack:
        for i in range(layout.energy_bits):
            vector[layout.slack.start + i] = ((layout.max_order_wh - energy) >> i) & 1
    return vector


class Book:
    """All orders of one clearing run, indexed by participant and slot."""

    def __init__(self, config: MarketConfig, orders: list[Order], extra_pairs=(), zones=None,
                 layout: Layout | None = None):
        """extra_pairs: (participant, slot) without an order that must still take part (readings).
        zones: {participant: zone} of a zoned market (default: the orders' zones, else the config's map).
        layout: the vectors' layout (default: the config's; a flexibility job's has fewer levels)."""
        self.config = config
        self.layout = layout or Layout.for_config(config)
        self.orders = orders
        self.participants = sorted({o.participant for o in orders} | {p for p, _ in extra_pairs})
        self.slots = sorted({o.slot for o in orders} | {s for _, s in extra_pairs})
        self.participant_index = {p: i for i, p in enumerate(self.participants)}
        self.slot_index = {s: i for i, s in enumerate(self.slots)}
        self.order_of = {(o.participant, o.slot): o for o in orders}
        self.zone_of, self.zones = {}, []
        if config.zoned:
            self.zone_of = dict(config.zone_of)
            self.zone_of.update(zones if zones is not None else {o.participant: o.zone for o in orders if o.zone})
            unzoned = sorted({o.participant for o in orders} - set(self.zone_of))
            if unzoned:
                raise BadParameter('zones', f'zoned market: no zone for {", ".join(unzoned[:5])}')
            self.zones = sorted(set(self.zone_of.values()))
        self.positions = {}  # (participant, slot) -> (position or None, energy)
        # Dense (participants, slots) arrays for vectorized encoding; -1 = zero order.
        self.position_array = np.full((len(self.participants), len(self.slots)), -1, dtype=np.int64)
        self.energy_array = np.zeros((len(self.participants), len(self.slots)), dtype=np.int64)
        for o in orders:
            position = self.position(o)
            self.positions[(o.participant, o.slot)] = (position, o.energy_wh)
            i, j = self.participant_index[o.participant], self.slot_index[o.slot]
            self.position_array[i, j] = self.encoded_position(o)
            self.energy_array[i, j] = o.energy_wh

    def position(self, order):
        """Encoded one-hot position of an order, None if it cannot trade locally."""
        k = self.layout.levels   # the config's K for orders (a flexibility book encodes its own positions)
        if order.side == 'sell':
            level = self.config.sell_level(order.limit_price)
            return level
        level = self.config.buy_level(order.limit_price)
        return None if level is None else k + level

    def encoded_position(self, order):
        """One-hot position including the two 'cannot trade locally' positions."""
        position = self.position(order)
        if position is None:
            return self.layout.sell_out + (order.side == 'buy')
        return position

    def untradeable(self):
        """Orders that cannot trade locally (owners are warned)."""
        return [o for o in self.orders if self.positions[(o.participant, o.slot)][0] is None]

    def encode(self, participants):
        """Vectors (n, slots, width) of the given participants (indices), zero orders filled in."""
        layout = self.layout
        rows = np.asarray(participants, dtype=np.int64)
        position = self.position_array[rows]
        energy = np.where(position >= 0, self.energy_array[rows], 0).astype(np.uint64)
        block = np.zeros((*position.shape, layout.width), dtype=np.uint64)
        block[..., layout.no_order] = position < 0
        r, c = np.nonzero(position >= 0)
        block[r, c, position[r, c]] = 1
        block[r, c, layout.weighted.start + position[r, c]] = energy[r, c]
        shifts = np.arange(layout.energy_bits, dtype=np.uint64)
        block[..., layout.bits] = (energy[..., None] >> shifts) & np.uint64(1)
        if layout.has_slack:
            block[..., layout.slack] = ((np.uint64(layout.max_order_wh) - energy)[..., None] >> shifts) & np.uint64(1)
        return block


@dataclass(frozen=True)
class ReadingLayout:
    """Per (participant, slot) meter package, checked inside MPC by multiplications only:

      sign     (1)  s = 1 if the deviation d = net - planned is negative;
      dev_bits (Bd) |d| in binary, Bd = bit length of max_reading_wh + max_order_wh;
      pos_bits (Br) max(net, 0), neg_bits (Br) max(-net, 0); Br = bit length of max_reading_wh;
      slack    (Br) only when max_reading_wh < 2**Br - 1: bits of max_reading_wh - |net|;
      unread   (1)  1 if the slot has no reading (the missing-reading rule's net stands in).

    Nodes check (1 - 2s)|d| = pos - neg - planned with planned taken from their order shares,
    pos * neg = 0, bitness and the slack sum; a participant cannot choose its deviation.
    """

    deviation_bits: int
    reading_bits: int
    max_reading_wh: int

    @classmethod
    def for_config(cls, config):
        return cls((config.max_reading_wh + config.max_order_wh).bit_length(),
                   config.max_reading_wh.bit_length(), config.max_reading_wh)

    @property
    def has_slack(self):
        return self.max_reading_wh != (1 << self.reading_bits) - 1

    @property
    def dev_bits(self):
        return slice(1, 1 + self.deviation_bits)

    @property
    def pos_bits(self):
        return slice(self.dev_bits.stop, self.dev_bits.stop + self.reading_bits)

    @property
    def neg_bits(self):
        return slice(self.pos_bits.stop, self.pos_bits.stop + self.reading_bits)

    @property
    def slack(self):
        return slice(self.neg_bits.stop, self.neg_bits.stop + (self.reading_bits if self.has_slack else 0))

    @property
    def unread(self):
        """The column of the unread bit: 1 where the slot has no reading (its net is the
        missing-reading rule's); delivered flexibility needs a reading."""
        return self.slack.stop

    @property
    def width(self):
        return self.unread + 1


def planned_positions(book, rows):
    """+energy (buy), -energy (sell), 0 (no order) for the given participants: (n, slots)."""
    k = book.layout.levels
    position = book.position_array[rows]
    energy = book.energy_array[rows]
    buys = ((position >= k) & (position < 2 * k)) | (position == 2 * k + 1)
    sells = ((position >= 0) & (position < k)) | (position == 2 * k)
    return np.where(buys, energy, 0) - np.where(sells, energy, 0)


def encode_readings(book, net_of, participants, read=None):
    """Reading packages (n, slots, width) of the given participants; net 0 where none.

    read: the (participant, slot) pairs that have a meter reading (the others are marked unread:
    their net is the missing-reading rule's); None: every pair of net_of."""
    layout = ReadingLayout.for_config(book.config)
    rows = np.asarray(participants, dtype=np.int64)
    net = np.zeros((len(rows), len(book.slots)), dtype=np.int64)
    for r, p in enumerate(rows):
        name = book.participants[p]
        for c, slot in enumerate(book.slots):
            net[r, c] = net_of.get((name, slot), 0)
    deviation = net - planned_positions(book, rows)
    block = np.zeros((*net.shape, layout.width), dtype=np.uint64)
    block[..., 0] = deviation < 0

    def bits(values, count):
        return (values.astype(np.uint64)[..., None] >> np.arange(count, dtype=np.uint64)) & np.uint64(1)

    block[..., layout.dev_bits] = bits(np.abs(deviation), layout.deviation_bits)
    block[..., layout.pos_bits] = bits(np.maximum(net, 0), layout.reading_bits)
    block[..., layout.neg_bits] = bits(np.maximum(-net, 0), layout.reading_bits)
    if layout.has_slack:
        block[..., layout.slack] = bits(layout.max_reading_wh - np.abs(net), layout.reading_bits)
    have = set(net_of) if read is None else set(read)
    for r, p in enumerate(rows):
        name = book.participants[p]
        block[r, :, layout.unread] = [(name, slot) not in have for slot in book.slots]
    return block

"""Many slot values in one Paillier plaintext: fixed-width fields, least significant first.

A meter-day is the vector ``import_wh[0..slots) + export_wh[0..slots)``. Every field is wide
enough for the largest sum the layout admits (``max_meters * max_reading_wh``) plus guard bits
(room for differential-privacy noise), so adding up to ``max_meters`` honest meter-days can
never carry from one field into the next, and the packed value stays below ``2**(k-1) < n``.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..common.errors import BadParameter

# Why a meter-day of another slot count is refused (the ciphertexts' fields are fixed by the keys):
DST_RULE = ("statistics take meter-days of the operator keys' slot count only (stats keygen --slots, 96 by "
            "default), so a DST-change day of 92 or 100 quarter hours in the market's timezone is refused; a market "
            'with timezone = "UTC" has 96 on every day')


@dataclass(frozen=True)
class Layout:
    slots: int              # slots per day (96 quarter hours; every meter-day has exactly this many)
    max_reading_wh: int     # per meter, slot and direction
    max_meters: int         # largest group whose sum must fit (feeder or zone)
    guard_bits: int         # spare bits per field (noise offset and noise)
    modulus_bits: int       # bit length of the Paillier modulus n

    @property
    def values(self) -> int:
        return 2 * self.slots

    @property
    def sum_bits(self) -> int:
        return (self.max_meters * self.max_reading_wh).bit_length()

    @property
    def field_bits(self) -> int:
        return self.sum_bits + self.guard_bits

    @property
    def fields_per_ciphertext(self) -> int:
        return (self.modulus_bits - 1) // self.field_bits

    @property
    def ciphertexts(self) -> int:
        return -(-self.values // self.fields_per_ciphertext)

    def check(self) -> None:
        """Check that the layout holds at least one field per plaintext.

        Raises:
            BadParameter: a size out of range, or a field wider than the modulus allows.
        """
        if self.slots < 1 or self.max_reading_wh < 1 or self.max_meters < 2 or self.guard_bits < 0:
            raise BadParameter('layout', 'slots, max_reading_wh >= 1, max_meters >= 2 and guard_bits >= 0 required')
        if self.fields_per_ciphertext < 1:
            raise BadParameter('modulus_bits',
                               f'a {self.field_bits}-bit field does not fit a {self.modulus_bits}-bit modulus')

    def pack(self, values: Sequence[int]) -> list[int]:
        """Plaintexts (ints) holding values (non-negative, each below 2**field_bits).

        Raises:
            BadParameter: not exactly self.values values, or one that does not fit its field.
        """
        if len(values) != self.values:
            raise BadParameter('values', f'{len(values)} values for a layout of {self.values}')
        width, per = self.field_bits, self.fields_per_ciphertext
        plaintexts = []
        for start in range(0, self.values, per):
            packed = 0
            for value in reversed(values[start:start + per]):
                if not 0 <= value < 1 << width:
                    raise BadParameter('values', f'value {value} does not fit a {width}-bit field')
                packed = packed << width | value
            plaintexts.append(packed)
        return plaintexts

    def unpack(self, plaintexts: Iterable[int]) -> tuple[list[int], bool]:
        """(values, overflow): the fields, and whether any bit above the last field is set."""
        width, per = self.field_bits, self.fields_per_ciphertext
        mask = (1 << width) - 1
        values, overflow = [], False
        for i, packed in enumerate(plaintexts):
            count = min(per, self.values - i * per)
            for _ in range(count):
                values.append(packed & mask)
                packed >>= width
            overflow |= packed != 0
        return values, overflow

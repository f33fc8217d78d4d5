"""The aggregator: check meter-days, multiply ciphertexts per feeder (DSO keys) or zone (TSO keys).

It holds public keys only. A group is released only with at least ``min_cohort`` meters (and
never more than the layout's ``max_meters``, so fields cannot carry). Zones roll up the
released feeders only: a feeder held back for its small cohort is left out of its zone too, so
a DSO and a TSO together cannot subtract their way to it. The output bundle carries products
of at least ``min_cohort >= 2`` ciphertexts, never an individual one.
"""

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import gmpy2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..common.errors import BadParameter, Malformed, NotFound, OutOfRange, Replayed, WrongPhase
from .dp import Noise
from .paillier import Mpz, PublicKey
from .submission import EncryptedDay, ciphertext_from_text, ciphertext_text

BUNDLE_FORMAT = 'mpc-market/aggregates/v1'
FeederMap = Mapping[str, tuple[str, str]]   # meter -> (feeder, zone)
Refusal = dict[str, str | int]              # {'feeder' or 'zone': name, 'meters': count, 'reason': text}
Group = tuple[str, str | None, list[str], list[str]]  # (name, zone or None, meters, feeders)
Bundle = dict[str, Any]                     # a JSON object: the aggregates file of one key
DEFAULT_MIN_COHORT = 5


@dataclass
class Release:
    """Which meters go into which group: the rule shared by the encrypted and plaintext paths."""
    feeders: dict[str, list[str]]       # feeder -> [meters], released feeders only
    zones: dict[str, list[str]]         # zone -> [released feeders]
    zone_of: dict[str, str]             # feeder -> zone (all feeders with a meter)
    refused: list[Refusal] = field(default_factory=list)        # [{'feeder', 'zone', 'meters', 'reason'}]
    refused_zones: list[Refusal] = field(default_factory=list)  # [{'zone', 'meters', 'reason'}]: too big for the layout

    def groups(self, level: str) -> list[Group]:
        """[(name, zone or None, [meters], [feeders])] for 'feeder' or 'zone' keys."""
        if level == 'feeder':
            return [(f, self.zone_of[f], ms, [f]) for f, ms in sorted(self.feeders.items())]
        held = {r['zone'] for r in self.refused_zones}
        return [(z, None, [m for f in fs for m in self.feeders[f]], fs) for z, fs in sorted(self.zones.items())
                if z not in held]

    def refusals(self, level: str) -> list[Refusal]:
        return self.refused + (self.refused_zones if level == 'zone' else [])


def plan_release(meters: Iterable[str], feeder_map: FeederMap, min_cohort: int, max_meters: int) -> Release:
    """Which accepted meters are released in which feeder and zone, and which groups are held back.

    Args:
        meters: the accepted meters (each in feeder_map).
        feeder_map: {meter: (feeder, zone)}.
        min_cohort: the fewest meters a feeder is released with.
        max_meters: the largest group the key layout holds (a bigger feeder or zone is refused).

    Returns:
        The Release: released feeders and their zones, and the refusals with their reasons.

    Raises:
        KeyError: a meter is not in feeder_map.
    """
    by_feeder: dict[str, list[str]] = {}
    zone_of: dict[str, str] = {}
    for meter in sorted(meters):
        feeder, zone = feeder_map[meter]
        by_feeder.setdefault(feeder, []).append(meter)
        zone_of[feeder] = zone
    release = Release({}, {}, zone_of)
    for feeder, members in sorted(by_feeder.items()):
        reason = ''
        if len(members) < min_cohort:
            reason = f'{len(members)} meters, below the minimum cohort of {min_cohort}'
        if len(members) > max_meters:
            reason = f'{len(members)} meters, above the key layout\'s max_meters {max_meters}'
        if reason:
            release.refused.append({'feeder': feeder, 'zone': zone_of[feeder], 'meters': len(members),
                                    'reason': reason})
            continue
        release.feeders[feeder] = members
        release.zones.setdefault(zone_of[feeder], []).append(feeder)
    for zone, feeders in sorted(release.zones.items()):
        count = sum(len(release.feeders[f]) for f in feeders)
        if count > max_meters:
            release.refused_zones.append({'zone': zone, 'meters': count, 'reason': f'{count} meters, above the key '
                                          f'layout\'s max_meters {max_meters}'})
    return release


class Aggregator:
    """Accepts the meter-days of one day and computes the encrypted group sums per operator key."""

    def __init__(self, public_keys: Sequence[PublicKey], registry: Mapping[str, Ed25519PublicKey],
                 feeder_map: FeederMap, day: str, min_cohort: int = DEFAULT_MIN_COHORT) -> None:
        """An aggregator of day's meter-days.

        Args:
            public_keys: the operator keys, each once.
            registry: the meters' public keys.
            feeder_map: each meter's feeder and zone.
            day: the day.
            min_cohort: the fewest meters a released group may have (at least 2).

        Raises:
            BadParameter: min_cohort below 2, or no keys or one key given twice.
        """
        if min_cohort < 2:
            raise BadParameter('min_cohort',
                               'min_cohort must be at least 2 (a cohort of 1 would forward a meter\'s ciphertext)')
        self.keys = {k.key_id: k for k in public_keys}
        if len(self.keys) != len(public_keys) or not self.keys:
            raise BadParameter('public_keys', 'give each operator key once')
        self.registry, self.feeder_map, self.day, self.min_cohort = registry, feeder_map, day, min_cohort
        self.accepted: dict[str, EncryptedDay] = {}

    def check(self, submission: EncryptedDay) -> None:
        """Raise a Refused error unless the submission is authentic, for this day and well formed."""
        submission.verify(self.registry)
        if submission.day != self.day:
            raise WrongPhase(f'{submission.meter}: readings for day {submission.day}, '
                           f'aggregating day {self.day}')
        feeder = self.feeder_map.get(submission.meter)
        if feeder is None:
            raise NotFound(f'meter {submission.meter} is not in the feeder map')
        if submission.feeder != feeder[0]:
            raise Malformed(f'{submission.meter} is on feeder {feeder[0]}, '
                           f'the submission says {submission.feeder}')
        blocks = dict(submission.blocks)      # blocks under other keys are ignored (another aggregator's)
        for key_id, key in self.keys.items():
            ciphertexts = blocks.get(key_id)
            if ciphertexts is None:
                raise Malformed(f'{submission.meter}: no ciphertexts under key {key.name} ({key_id})')
            if len(ciphertexts) != key.layout.ciphertexts:
                raise Malformed(f'{submission.meter}: {len(ciphertexts)} ciphertexts under key '
                               f'{key.name}, its layout has {key.layout.ciphertexts}')
            for i, c in enumerate(ciphertexts):
                if not key.valid_ciphertext(c):
                    raise OutOfRange(f'{submission.meter}: ciphertext {i} is not a ciphertext of key '
                                   f'{key.name} (outside Z*_n^2)')

    def accept(self, submission: EncryptedDay, checked: bool = False) -> None:
        if not checked:
            self.check(submission)
        if submission.meter in self.accepted:
            raise Replayed(f'{submission.meter} already submitted readings for {self.day}')
        self.accepted[submission.meter] = submission

    def release(self, noise: Noise | None = None) -> dict[str, Bundle]:
        """The encrypted group sums under every operator key.

        Args:
            noise: differential-privacy noise added to each group's sums; None: exact sums.

        Returns:
            {key_id: bundle dict}.

        Raises:
            BadParameter: the noise does not fit a key's guard bits.
        """
        bundles: dict[str, Bundle] = {}
        blocks = {meter: dict(s.blocks) for meter, s in self.accepted.items()}
        for key_id, key in self.keys.items():
            plan = plan_release(self.accepted, self.feeder_map, self.min_cohort, key.layout.max_meters)
            groups = []
            for name, zone, meters, feeders in plan.groups(key.level):
                products: list[Mpz] = [gmpy2.mpz(1)] * key.layout.ciphertexts
                for meter in meters:
                    key.add(products, blocks[meter][key_id])
                if noise is not None:
                    _check_noise_fits(key, len(meters), noise)
                    key.add(products, key.encrypt_values(noise.sample(key.layout.values)))
                groups.append({'name': name, 'zone': zone, 'feeders': feeders, 'meters': len(meters),
                               'ciphertexts': [ciphertext_text(int(c)) for c in products]})
            bundles[key_id] = {'format': BUNDLE_FORMAT, 'day': self.day, 'key_id': key_id, 'key_name': key.name,
                               'level': key.level, 'min_cohort': self.min_cohort, 'submitted': len(self.accepted),
                               'groups': groups, 'refused': plan.refusals(key.level),
                               'noise': None if noise is None else noise.describe(key.layout.slots)}
        return bundles


def empty_release_reason(bundles: Mapping[str, Bundle]) -> str:
    """Why a release has nothing to give any operator ('' when some key's bundle has a group).

    Args:
        bundles: {key_id: bundle dict} from Aggregator.release.

    Returns:
        '' if any bundle has a group, else one line: how many meter-days, the minimum cohort and
        the meters of the (first five) feeders held back.
    """
    if any(bundle['groups'] for bundle in bundles.values()):
        return ''
    first = next(iter(bundles.values()))
    held = sorted({(r.get('feeder') or r['zone'], r['meters']) for b in bundles.values() for r in b['refused']})
    shown = ', '.join(f'{name} {meters}' for name, meters in held[:5]) + (', ...' if len(held) > 5 else '')
    return (f'{first["submitted"]} meter-days, no feeder has the minimum cohort of {first["min_cohort"]} meters'
            + (f' (meters per feeder: {shown})' if shown else ''))


def _check_noise_fits(key: PublicKey, meters: int, noise: Noise) -> None:
    room = (1 << key.layout.field_bits) - 1 - meters * key.layout.max_reading_wh
    if 2 * noise.bias > room:
        raise BadParameter('epsilon', f'noise of scale {noise.scale} Wh needs {2 * noise.bias} spare per field, '
                           f'key {key.name} has {room}; use a larger epsilon or a key with more guard_bits')


def bundle_ciphertexts(group: Mapping[str, Any]) -> list[int]:
    """The ciphertexts of one group of a bundle.

    Args:
        group: a bundle's group object, its 'ciphertexts' a list of base64 texts.

    Returns:
        The ciphertexts as integers.

    Raises:
        KeyError: the group has no 'ciphertexts'.
        TypeError: a ciphertext is not a string.
        ValueError: a ciphertext is not base64 (binascii.Error).
    """
    return [ciphertext_from_text(c) for c in group['ciphertexts']]


def bundle_text(bundle: Mapping[str, Any]) -> str:
    """The aggregates file's text of a bundle (indented JSON, one trailing newline).

    Args:
        bundle: a bundle from Aggregator.release.

    Returns:
        The JSON text.
    """
    return json.dumps(bundle, indent=1) + '\n'

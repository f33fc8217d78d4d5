"""Operator side: decrypt an aggregates bundle into per-group totals, a CSV and one PNG per group.

Every decrypted field is checked: no bit may be set above the last field, and each field must
lie within what the group's meters could have sent (plus the noise range). A meter that
encrypted a grossly out-of-range value would otherwise shift other slots' totals, so that group
alone is refused; every other group of the bundle is still released. What this cannot catch: a
meter that encrypts n - x (a negative reading) or any in-range lie shifts its own group's sums
undetectably, since there are no range proofs (see SECURITY.md).
"""

import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn

from ..common.days import DAY_RULE, is_day
from ..common.errors import InputError
from ..common.names import NAME_RULE, is_name
from ..common.textinput import csv_records, parse_int, read_text
from .aggregate import BUNDLE_FORMAT, Bundle, bundle_ciphertexts
from .paillier import LEVELS, PrivateKey, json_line, load_json_object

COLUMNS = ('slot', 'slot_start', 'meters', 'import_wh', 'export_wh', 'net_wh')  # slot: of the day, 0..


@dataclass
class GroupTotals:
    name: str
    zone: str | None
    meters: int
    imports: list[int]      # Wh per slot
    exports: list[int]

    @property
    def net(self) -> list[int]:
        return [i - e for i, e in zip(self.imports, self.exports, strict=True)]


def load_bundle(path: str) -> tuple[str, Bundle]:
    """Read an aggregates file, its structure checked field by field.

    Args:
        path: the file an operator fetched.

    Returns:
        (its text, the bundle).

    Raises:
        InputError: not an aggregates file, or a field of the wrong type (naming line and key).
    """
    text, bundle = load_json_object(path)
    def bad(key: str, what: str) -> NoReturn:
        raise InputError(path, json_line(text, key), key, what)
    if bundle.get('format') != BUNDLE_FORMAT:
        bad('format', f'expected an aggregates file ({BUNDLE_FORMAT})')
    if not isinstance(bundle.get('key_id'), str):
        bad('key_id', 'expected the key id (a string)')
    if bundle.get('level') not in LEVELS:
        bad('level', f'expected one of {LEVELS}')
    if not is_day(bundle.get('day')):
        bad('day', f'expected {DAY_RULE}')
    noise = bundle.get('noise')
    if noise is not None and not (isinstance(noise, dict) and type(noise.get('bias_wh')) is int
                                  and 0 <= noise['bias_wh'] < 1 << 64):
        bad('noise', 'expected null or an object with an integer bias_wh')
    groups = bundle.get('groups', [])
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        bad('groups', 'expected a list of objects')
    for group in groups:
        if not is_name(group.get('name')):
            bad('groups', f'a group name is not {NAME_RULE}')
        if group.get('zone') is not None and not is_name(group.get('zone')):
            bad('zone', f'group {group["name"]}: zone is not {NAME_RULE}')
        if type(group.get('meters')) is not int:
            bad('meters', f'group {group["name"]}: expected an integer count of meters')
        if not isinstance(group.get('ciphertexts'), list) or not all(isinstance(c, str) for c in group['ciphertexts']):
            bad('ciphertexts', f'group {group["name"]}: expected a list of ciphertexts')
    refused = bundle.get('refused', [])
    if not isinstance(refused, list) or not all(
            isinstance(r, dict) and isinstance(r.get('reason'), str)
            and any(isinstance(r.get(k), str) for k in ('feeder', 'zone')) for r in refused):
        bad('refused', 'expected a list of {feeder|zone, reason}')
    return text, bundle


def decrypt_bundle(private_key: PrivateKey, path: str, min_cohort: int = 2) -> tuple[Bundle, list[GroupTotals]]:
    """(bundle, [GroupTotals]) of an aggregates file under private_key.

    A group below min_cohort, or whose decrypted fields exceed what its meters could send, is
    refused alone: it is listed in bundle['refused_at_decryption'] as {name, reason} and every
    other group is released.

    Args:
        private_key: the operator key the bundle is under.
        path: the aggregates file.
        min_cohort: the operator's own minimum group size (at least 2 is always enforced).

    Returns:
        (the bundle with 'refused_at_decryption' added, the released groups' totals).

    Raises:
        InputError: a malformed file, a bundle under another key, or malformed ciphertexts.
    """
    text, bundle = load_bundle(path)
    public = private_key.public
    if bundle['key_id'] != public.key_id:
        raise InputError(path, json_line(text, 'key_id'), 'key_id', f'aggregates are under key {bundle["key_id"]}, '
                         f'the private key is {public.name} ({public.key_id})')
    layout = public.layout
    bias = bundle['noise']['bias_wh'] if bundle.get('noise') else 0
    totals: list[GroupTotals] = []
    refused: list[dict[str, str]] = []
    for group in bundle.get('groups', []):
        name, meters = group['name'], group['meters']
        line = json_line(text, name)
        try:
            ciphertexts = bundle_ciphertexts(group)
        except (ValueError, TypeError, KeyError):
            raise InputError(path, line, 'ciphertexts', f'group {name}: malformed ciphertexts') from None
        if len(ciphertexts) != layout.ciphertexts or not all(public.valid_ciphertext(c) for c in ciphertexts):
            raise InputError(path, line, 'ciphertexts',
                             f'group {name}: not {layout.ciphertexts} ciphertexts of this key')
        if meters < max(2, min_cohort) or meters > layout.max_meters:
            refused.append({'name': name, 'reason': f'{meters} meters is outside {max(2, min_cohort)}..'
                                                    f'{layout.max_meters}; not decrypting it'})
            continue
        values, overflow = layout.unpack([private_key.decrypt(c) for c in ciphertexts])
        limit = meters * layout.max_reading_wh + 2 * bias
        if overflow or any(v > limit for v in values):
            refused.append({'name': name, 'reason': f'decrypted fields exceed what {meters} meters can send: a meter '
                                                    'encrypted an out-of-range value; this group is not released'})
            continue
        values = [v - bias for v in values]
        totals.append(GroupTotals(name, group.get('zone'), meters, values[:layout.slots], values[layout.slots:]))
    bundle['refused_at_decryption'] = refused
    return bundle, totals


def totals_rows(level: str, totals: Iterable[GroupTotals],
                starts: Sequence[str] = ()) -> list[dict[str, str | int]]:
    """The rows of the totals CSV.

    Args:
        level: 'feeder' or 'zone' (the name of the group column).
        totals: the groups, from decrypt_bundle.
        starts: the ISO 8601 UTC start of each slot of the day (cli.stats maps a market's day), or () for none.

    Returns:
        One row a group and slot: {level, slot, slot_start ('' without starts), meters, import_wh,
        export_wh, net_wh}.
    """
    return [{level: g.name, 'slot': s, 'slot_start': starts[s] if starts else '', 'meters': g.meters,
             'import_wh': g.imports[s], 'export_wh': g.exports[s],
             'net_wh': g.net[s]} for g in totals for s in range(len(g.imports))]


def load_traded(path: str) -> dict[int, int]:
    """The traded volume per slot of a market's public.csv.

    Args:
        path: the public.csv.

    Returns:
        {slot: traded_wh}.

    Raises:
        InputError: unreadable, a missing column or a non-integer field.
    """
    return {parse_int(path, line, 'slot', r['slot']): parse_int(path, line, 'traded_wh', r['traded_wh'])
            for line, r in csv_records(path, read_text(path), ('slot', 'traded_wh'))}


def plot_group(level: str, group: GroupTotals, day: str, traded: Mapping[int, int] | None = None,
               noisy: bool = False) -> bytes:
    """A chart of one group's day, in kW (mean power over each slot).

    The group's net load, imports and exports fill a panel with its own scale; the local market's
    traded energy, which is the whole community's, gets a second panel below (on the group's axis
    it would dwarf a 20-home feeder's curve).

    Args:
        level: 'feeder' or 'zone' (in the title).
        group: its totals (Wh per slot; the day's slots span 24 hours).
        day: the day (in the title).
        traded: {slot: traded_wh} of the local market, drawn as bars on the second panel if given.
        noisy: the totals carry DP noise (said in the title).

    Returns:
        PNG bytes.
    """
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib.figure import Figure

    slots = len(group.imports)
    slot_hours = 24 / slots
    hours = [s * slot_hours for s in range(slots)]

    def kw(wh: Iterable[int]) -> list[float]:  # Wh in one slot -> mean kW over it
        return [w / slot_hours / 1000 for w in wh]

    figure = Figure(figsize=(9, 6.2 if traded else 4), dpi=100, layout='constrained')
    axes = figure.subplots(2 if traded else 1, 1, sharex=True, squeeze=False,
                           height_ratios=(3, 2) if traded else None)[:, 0]
    own = axes[0]
    own.step(hours + [24], kw(group.net + group.net[-1:]), where='post', color='tab:blue',
             label='net load (import - export)')
    own.fill_between(hours + [24], kw(group.imports + group.imports[-1:]), step='post', alpha=0.2,
                     color='tab:red', label='import')
    own.fill_between(hours + [24], [-v for v in kw(group.exports + group.exports[-1:])], step='post', alpha=0.2,
                     color='tab:green', label='export (drawn negative)')
    own.axhline(0, color='black', linewidth=0.5)
    own.set_ylabel('kW')
    own.set_title(f'{level} {group.name}, {day}: {group.meters} meters' + (' (with DP noise)' if noisy else ''))
    own.legend(loc='upper left', fontsize=8)
    own.grid(True, alpha=0.3)
    if traded:
        market = axes[1]
        market.bar([h + slot_hours / 2 for h in hours], kw(traded.get(s, 0) for s in range(slots)),
                   width=slot_hours * 0.8, color='tab:orange', alpha=0.8)
        market.set_ylabel('kW')
        market.set_title('traded in the local market: the whole community (public results), not this '
                         f'{level}', fontsize=10)
        market.grid(True, alpha=0.3)
    axes[-1].set_xlim(0, 24)
    axes[-1].set_xticks(range(0, 25, 3))
    axes[-1].set_xlabel(f'hour of day ({slots} slots of {slot_hours * 60:g} min)')
    buffer = io.BytesIO()
    figure.savefig(buffer, format='png')
    return buffer.getvalue()

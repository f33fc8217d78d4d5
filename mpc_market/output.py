"""Result files: public.csv and participants.csv, written all-or-nothing."""

import csv
import io
import json
import os

PUBLIC_COLUMNS = ('slot', 'price', 'traded_wh', 'residual_wh')
PARTICIPANT_COLUMNS = ('participant', 'slot', 'side', 'energy_wh', 'matched_wh', 'unmatched_wh', 'amount', 'status')


def public_table(config, result):
    return [{'slot': s.slot, 'price': '' if s.price_units is None else config.format_price(s.price_units),
             'traded_wh': s.traded_wh, 'residual_wh': s.residual_wh} for s in result.slots]


def participant_table(config, result):
    return [{'participant': r.participant, 'slot': r.slot, 'side': r.side, 'energy_wh': r.energy_wh,
             'matched_wh': r.matched_wh, 'unmatched_wh': r.unmatched_wh,
             'amount': config.format_amount(r.amount), 'status': r.status} for r in result.rows]


def _csv_text(columns, rows):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator='\n')
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_results(out_dir, config, result):
    """Write public.csv, participants.csv and summary.json; all appear together or none."""
    os.makedirs(out_dir, exist_ok=True)
    files = {
        'public.csv': _csv_text(PUBLIC_COLUMNS, public_table(config, result)),
        'participants.csv': _csv_text(PARTICIPANT_COLUMNS, participant_table(config, result)),
        'summary.json': json.dumps({'excluded': result.excluded, 'stats': result.stats}, indent=1, default=str),
    }
    temps = []
    try:
        for name, text in files.items():
            tmp = os.path.join(out_dir, f'.{name}.tmp')
            with open(tmp, 'w', newline='') as f:
                f.write(text)
            temps.append((tmp, os.path.join(out_dir, name)))
    except BaseException:
        for tmp, _ in temps:
            os.unlink(tmp)
        raise
    for tmp, final in temps:
        os.replace(tmp, final)
    return [final for _, final in temps]

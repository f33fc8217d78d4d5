"""Print the saved benchmark results as Markdown tables (as used in README.md).

    python benchmarks/tables.py
"""

import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def load(name):
    with open(os.path.join(HERE, 'results', name)) as f:
        return json.load(f)


def machine_line(data):
    m = data['machine']
    return f"Measured {data['date']} on {m['cores']} cores ({m['cpu']}), Python {m['python']}, 3 nodes on localhost."


def clearing_table(data):
    lines = [machine_line(data), '',
             '| participants × slots | order vectors | end to end | sharing (client) | validation | clearing | '
             'allocation | KiB sent / participant / node | peak memory / node | = reference |',
             '|---|---|---|---|---|---|---|---|---|---|']
    for r in data['rows']:
        lines.append(f"| {r['participants']:,} × {r['slots']} | {r['order_vectors']:,} | **{r['end_to_end_s']:.1f} s** | "
                     f"{r['sharing_s']:.1f} s | {r['validation_s']:.1f} s | {r['clearing_s']:.1f} s | "
                     f"{r['allocation_s']:.1f} s | {r['bytes_per_participant'] / 1024:.1f} | "
                     f"{r['peak_rss_mb_per_node']:.0f} MB | {r.get('agrees_with_reference', '')} |")
    return '\n'.join(lines)


def settlement_table(data):
    lines = [machine_line(data), '',
             '| participants × 1 slot | mechanism | end to end (clear + settle) | sharing | validation | clearing | '
             'allocation | settlement | KiB sent / participant / node | peak memory / node | = reference, balanced |',
             '|---|---|---|---|---|---|---|---|---|---|---|']
    for r in data['rows']:
        lines.append(f"| {r['participants']:,} | {r['mechanism']} | **{r['end_to_end_s']:.1f} s** | {r['sharing_s']:.1f} s | "
                     f"{r['validation_s']:.1f} s | {r['clearing_s']:.1f} s | {r['allocation_s']:.1f} s | "
                     f"**{r['settlement_s']:.1f} s** | {r['bytes_per_participant'] / 1024:.1f} | "
                     f"{r['peak_rss_mb_per_node']:.0f} MB | {r.get('agrees_with_reference', '')}, "
                     f"{r.get('money_balances', '')} |")
    return '\n'.join(lines)


if __name__ == '__main__':
    print('### Clearing\n')
    print(clearing_table(load('clearing-2core.json')))
    print('\n### Clearing and settlement\n')
    print(settlement_table(load('settlement-2core.json')))

"""Print the committed clearing, settlement and rules results as the Markdown tables of docs/performance.md.

    python -m benchmarks.tables
"""

import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def load(suite):
    """The results.json of a suite's committed full run."""
    with open(os.path.join(HERE, 'results', 'suites', suite, 'results.json')) as f:
        return json.load(f)


def machine_line(data):
    m = data['machine']
    return f"Measured {data['date']} on {m['cores']} cores ({m['cpu']}), Python {m['python']}, 3 nodes on localhost."


def seconds(key, bold=False):
    return lambda r: f"**{r[key]:.1f} s**" if bold else f"{r[key]:.1f} s"


SHARED = [('sharing (client)', seconds('sharing_s')), ('validation', seconds('validation_s')),
          ('clearing', seconds('clearing_s')), ('allocation', seconds('allocation_s'))]
TRAILER = [('KiB sent / participant / node', lambda r: f"{r['bytes_per_participant'] / 1024:.1f}"),
           ('peak memory / node', lambda r: f"{r['peak_rss_mb_per_node']:.0f} MB")]
CLEARING = ([('participants × slots', lambda r: f"{r['participants']:,} × {r['slots']}"),
             ('order vectors', lambda r: f"{r['order_vectors']:,}"), ('end to end', seconds('end_to_end_s', True))]
            + SHARED + TRAILER + [('= reference', lambda r: str(r.get('agrees_with_reference', '')))])
SETTLEMENT = ([('participants × 1 slot', lambda r: f"{r['participants']:,}"), ('mechanism', lambda r: r['mechanism']),
               ('end to end (clear + settle)', seconds('end_to_end_s', True))]
              + SHARED + [('settlement', seconds('settlement_s', True))] + TRAILER
              + [('= reference, balanced', lambda r: f"{r.get('agrees_with_reference', '')}, "
                                                     f"{r.get('money_balances', '')}")])


def table(data, columns):
    lines = [machine_line(data), '', '| ' + ' | '.join(name for name, _ in columns) + ' |',
             '|' + '---|' * len(columns)]
    lines += ['| ' + ' | '.join(cell(r) for _, cell in columns) + ' |' for r in data['rows']]
    return '\n'.join(lines)
RULES = [('participants × slots', lambda r: f"{r['participants']:,} × {r['slots']}"),
         ('merit order (nodes)', seconds('merit_nodes_s', True)), ('pro-rata (nodes)', seconds('pro-rata_nodes_s')),
         ('zoned, zones (nodes)', lambda r: f"**{r['zoned_nodes_s']:.1f} s** ({r['zones']})"),
         ('merit / pro-rata', lambda r: f"{1 / r['prorata_over_merit_nodes']:.2f}×"),
         ('zoned / merit (nodes, end to end)', lambda r: f"**{r['zoned_over_merit_nodes']:.2f}×**, "
                                                          f"{r['zoned_over_merit_total']:.2f}×"),
         ('= references', lambda r: str(r['merit_agrees'] and r['pro-rata_agrees'] and r['zoned_agrees']))]


if __name__ == '__main__':
    print('## Clearing\n')
    print(table(load('clearing'), CLEARING))
    print('\n## Clearing and settlement\n')
    print(table(load('settlement'), SETTLEMENT))
    print('\n## Market rules\n')
    print(table(load('rules'), RULES))

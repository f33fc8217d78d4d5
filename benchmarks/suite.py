"""The shared frame of every benchmark suite: presets, result rows, files, plots and report.

A suite is a module ``bench_NAME`` with ``TITLE``, ``COLUMNS`` (its report table),
``run(params, seed) -> (rows, notes)`` and ``figures(rows, directory) -> [(title, png path)]``.
Its parameters come from ``benchmarks/presets/NAME.toml`` (``[quick]`` or ``[full]``; with
``MPC_MARKET_BENCH_SMOKE=1`` in the environment, ``--quick`` runs ``[quick]`` with the ``[smoke]``
overrides: the smallest run that still writes every row type, plot and the report, for
tests/test_bench.py, which checks the plumbing, not the figures).
Every row carries the machine, the versions, the parameters, the seed, timings per phase, bytes
sent per node, peak memory per node and whether the result equals the plaintext reference. The
suite's directory gets ``results.csv``, ``results.json``, one PNG per figure and ``report.md``
embedding them; ``report.md`` and the PNGs can be regenerated from ``results.json`` alone
(``python -m benchmarks report DIR``).

Optional hooks of a suite module: ``notes(rows)`` (notes derived from the rows, so a regenerated
report has them too), ``tables(rows)`` (several report tables instead of one of ``COLUMNS``) and
``options(group)`` (command-line options of its own, e.g. flood's ``--seconds``; each sets the
parameter of its ``dest``).
"""

import csv
import importlib
import json
import os
import time
import tomllib
from importlib import metadata

from .common import machine

HERE = os.path.dirname(os.path.abspath(__file__))
# the suites `all` runs, in its order
SUITES = ('scaling', 'peers', 'mechanisms', 'baseline', 'latency', 'scenarios', 'mitigations',
          'clearing', 'settlement', 'rules', 'deployment', 'stats', 'round_params', 'flex')
# run by name only: the flood loads the machine on purpose (tests/security/test_flooding.py runs it)
EXTRA_SUITES = ('flood',)
# '1': --quick runs [quick] with each preset's [smoke] overrides (tests/test_bench.py; never committed results)
SMOKE_ENV = 'MPC_MARKET_BENCH_SMOKE'


def versions():
    """Versions of the packages the figures depend on."""
    out = {}
    for package in ('mpc_market', 'mpyc', 'gmpy2', 'numpy', 'grpcio', 'phe'):
        try:
            out[package] = metadata.version(package.replace('_', '-'))
        except metadata.PackageNotFoundError:
            out[package] = ''
    return out


def load_preset(name, quick, smoke=False):
    """The suite's parameters of benchmarks/presets/NAME.toml.

    Args:
        name: the suite.
        quick: [quick] instead of [full].
        smoke: [quick] with the preset's [smoke] overrides (quick must be set; a preset without
            [smoke] runs as [quick]).

    Returns:
        (the parameters, the seed)
    """
    with open(os.path.join(HERE, 'presets', f'{name}.toml'), 'rb') as f:
        preset = tomllib.load(f)
    params = preset['quick' if quick else 'full']
    if smoke and quick:
        params = {**params, **preset.get('smoke', {})}
    return params, preset.get('seed', 1)


def smoke_run(quick):
    """Whether a --quick run is a smoke run (SMOKE_ENV set to '1', as tests/test_bench.py does)."""
    return quick and os.environ.get(SMOKE_ENV) == '1'


def profile_day(params):
    """The day of published load and PV profiles a run uses (``--profiles``), or None: the built-in shapes."""
    from mpc_market.market.profiles import parse_day
    day = params.get('profiles')
    return parse_day(day, 'benchmark parameters') if day else None


def module(name):
    """The suite's module, benchmarks/bench_NAME.py."""
    return importlib.import_module(f'.bench_{name}', __package__)


def run_suite(name, quick, out_dir, profiles=None, overrides=None, save=True):
    """Run one suite; write its results, figures and report into out_dir/NAME.

    Args:
        name: the suite (SUITES or EXTRA_SUITES).
        quick: the [quick] preset instead of [full].
        out_dir: the results directory; the suite writes its subdirectory NAME.
        profiles: a day (YYYY-MM-DD): communities from published load and PV profiles of that day.
        overrides: parameters replacing the preset's (the suite's own command-line options).
        save: False writes nothing (the rows are only printed by the suite).

    Returns:
        (the suite's directory or None when not saved, the rows)
    """
    suite = module(name)
    smoke = smoke_run(quick)
    params, seed = load_preset(name, quick, smoke)
    params = dict(params, **(overrides or {}), **({'profiles': profiles} if profiles else {}))
    started = time.perf_counter()
    rows, notes = suite.run(params, seed)
    rows = [dict(r, suite=name, seed=seed) for r in rows]
    if not save:
        return None, rows
    context = {'suite': name, 'title': suite.TITLE, 'quick': quick, **({'smoke': True} if smoke else {}),
               'params': params, 'seed': seed,
               'machine': machine(), 'versions': versions(), 'date': time.strftime('%Y-%m-%d'),
               'seconds': round(time.perf_counter() - started, 1), 'notes': notes}
    directory = os.path.join(out_dir, name)
    write_results(directory, context, rows)
    return directory, rows


def write_results(directory, context, rows):
    """results.json, results.csv, the plots and report.md of a suite's run into directory."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, 'results.json'), 'w') as f:
        json.dump({**context, 'rows': rows}, f, indent=1)
    report(directory)


def write_csv(path, rows, context):
    """Every row with the machine and versions flattened in, so one CSV line stands alone."""
    extra = {'machine': f'{context["machine"]["cores"]} cores, {context["machine"]["cpu"]}',
             'python': context['machine']['python'],
             **{f'version_{k}': v for k, v in context['versions'].items()}}
    columns = list(dict.fromkeys(k for r in rows for k in r)) + list(extra)
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, **extra})


def report(directory):
    """results.csv, report.md and the PNGs of a suite's directory, from its results.json alone."""
    with open(os.path.join(directory, 'results.json')) as f:
        data = json.load(f)
    write_csv(os.path.join(directory, 'results.csv'), data['rows'], data)
    suite = module(data['suite'])
    figures = suite.figures(data['rows'], directory)
    m = data['machine']
    known = [', '.join(f'{k} {v}' for k, v in data['versions'].items() if v)] if data['versions'] else []
    known += [f'seed {data["seed"]}'] + ([f'{data["seconds"]} s in all'] if data['seconds'] is not None else [])
    kind = 'Smoke' if data.get('smoke') else 'Quick' if data['quick'] else 'Full'  # older results: no 'smoke'
    lines = [f'# {data["title"]}', '',
             f'{kind} run of {data["date"]} on {m["cores"]} cores ({m["cpu"]}), '
             f'Python {m["python"]}; ' + '; '.join(known) + '.', '',
             'Parameters: `' + json.dumps(data['params']) + '`', '']
    for title, path in figures:
        lines += [f'![{title}]({os.path.basename(path)})', '']
    sections = suite.tables(data['rows']) if hasattr(suite, 'tables') else [(None, suite.COLUMNS, data['rows'])]
    for heading, columns, rows in sections:
        lines += ([f'## {heading}', ''] if heading else []) + table(columns, rows) + ['']
    derived = suite.notes(data['rows']) if hasattr(suite, 'notes') else []
    lines += [f'- {note}' for note in derived + data['notes']]
    with open(os.path.join(directory, 'report.md'), 'w') as f:
        f.write('\n'.join(lines).rstrip() + '\n')


def table(columns, rows):
    """A Markdown table of the given (header, key) columns; None (not measured) shows as —."""
    out = ['| ' + ' | '.join(h for h, _ in columns) + ' |', '|' + '---|' * len(columns)]
    for r in rows:
        out.append('| ' + ' | '.join('—' if r.get(k) is None and k in r else str(r.get(k, '')) for _, k in columns)
                   + ' |')
    return out


def figure(width=7.0, height=4.5):
    """A matplotlib Figure without a display (no pyplot state).

    Args:
        width: inches (110 dpi: 7 in is the 770 px the reports show).
        height: inches.

    Returns:
        The Figure.
    """
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib.figure import Figure
    return Figure(figsize=(width, height), dpi=110)


def plain_log_ticks(axis, which='y', ticks=None):
    """Label a log axis with plain numbers (1, 10, 1,000 or the given ticks), not 6×10⁰.

    Args:
        axis: the matplotlib Axes.
        which: 'x' or 'y'.
        ticks: the values to label (default: matplotlib's decades, plus 2 and 5 within them).
    """
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter
    target = axis.xaxis if which == 'x' else axis.yaxis
    target.set_major_locator(FixedLocator(ticks) if ticks is not None else LogLocator(subs=(1, 2, 5)))
    target.set_major_formatter(FuncFormatter(lambda v, _: f'{v:,.3g}' if v < 1 else f'{v:,.0f}'))
    target.set_minor_formatter(NullFormatter())


def headroom(axis, values, share=0.12):
    """A linear y axis from 0 to share above the largest value, so the top markers are not clipped."""
    axis.set_ylim(0, max(values) * (1 + share) if values and max(values) > 0 else 1)


def mpc_row(result, started, participants):
    """Timings per phase, bytes per node and peak memory per node of a local MPC run's stats."""
    stats = result.stats
    phases = {}  # per phase the slowest node; node_total: the MPC session (start-up to outputs)
    for timings in stats['node_timings'] + stats.get('settlement_session_timings', []):
        for name, seconds in timings.items():
            phases[name] = max(phases.get(name, 0.0), seconds)
    return {'seconds': round(time.perf_counter() - started, 3), 'sharing_s': round(stats['sharing_s'], 3),
            **{f'{k}_s': round(v, 3) for k, v in phases.items()},
            'bytes_per_node': round(stats['bytes_sent_per_participant'] * participants),
            'peak_rss_mb_per_node': stats['peak_rss_mb']}

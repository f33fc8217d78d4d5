"""Shared by the benchmark scripts: the machine description and saving result tables."""

import contextlib
import csv
import json
import os
import platform
import time


def machine():
    """Cores, CPU model and Python version: stated next to every figure."""
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            names = [ln.split(':', 1)[1].strip() for ln in f if ln.startswith('model name')]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return {'cores': os.cpu_count(), 'cpu': cpu, 'python': platform.python_version(), 'host': platform.node()}


def save_rows(out_dir, name, info, rows):
    """Write out_dir/<name>-<cores>core.json (with the machine) and .csv; print where."""
    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.join(out_dir, f'{name}-{info["cores"]}core')
    with open(stem + '.json', 'w') as f:
        json.dump({'machine': info, 'date': time.strftime('%Y-%m-%d'), 'rows': rows}, f, indent=1)
    with open(stem + '.csv', 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f'saved {stem}.json and {stem}.csv')


@contextlib.contextmanager
def instrumented(**variables):
    """Processes started inside get benchmarks/instrument first on PYTHONPATH and these variables
    (its gRPC recorder, its mitigation switches); the environment is restored afterwards."""
    saved = dict(os.environ)
    here = os.path.dirname(os.path.abspath(__file__))
    os.environ.update(variables, PYTHONPATH=os.pathsep.join(
        [os.path.join(here, 'instrument')] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]))
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)

"""Shared by the benchmark suites: the machine description and instrumented child processes."""

import contextlib
import os
import platform


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

"""The package layout keeps its promises: layering by role, no cycles, no private imports, a documented API."""

import ast
import functools
import inspect
import os
import pkgutil

import mpc_market

ROOT = os.path.dirname(mpc_market.__file__)
# role -> the roles it may import from (docs/architecture.md)
ALLOWED = {
    'common': {'common'},
    'market': {'common', 'market'},
    'mpc': {'common', 'market', 'mpc'},
    'net': {'common', 'market', 'mpc', 'net', 'rpc'},
    'stats': {'common', 'net', 'stats', 'rpc'},
    'rpc': {'rpc'},
    'api': {'common', 'market', 'mpc'},
    'plots': {'common', 'market'},
    'cli': {'api', 'common', 'market', 'mpc', 'net', 'stats', 'rpc', 'cli', 'plots'},
    '__init__': {'api', 'common', 'market', 'mpc', 'stats', 'plots'},
    '__main__': {'cli'},
}


def modules():
    """{dotted name: path} of every module of the package except the generated stubs."""
    found = {}
    for info in pkgutil.walk_packages([ROOT], 'mpc_market.'):
        spec = info.module_finder.find_spec(info.name)
        if '.rpc.' not in info.name + '.':
            found[info.name] = spec.origin
    found['mpc_market'] = os.path.join(ROOT, '__init__.py')
    return found


@functools.cache
def parsed(path):
    """The syntax tree of a module's file, parsed once per test process (the tests only read it)."""
    with open(path) as f:
        return ast.parse(f.read())


@functools.cache
def nodes(path):
    """Every node of a module's tree, walked once per test process (each test filters the list)."""
    return tuple(ast.walk(parsed(path)))


def role(module):
    parts = module.split('.')
    return '__init__' if len(parts) == 1 else parts[1]


@functools.cache
def imports(module, path):
    """(imported module, names, line) of every import, lazy ones included, resolved to absolute."""
    return tuple(_imports(module, path))


def _imports(module, path):
    package = module if path.endswith('__init__.py') else module.rsplit('.', 1)[0]
    for node in nodes(path):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                anchor = package.split('.')[:len(package.split('.')) - node.level + 1]
                base = '.'.join(anchor + ([node.module] if node.module else []))
            if base.startswith('mpc_market'):
                for alias in node.names:
                    candidate = f'{base}.{alias.name}'
                    if candidate in MODULES:
                        yield candidate, (), node.lineno
                    else:
                        yield base, (alias.name,), node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith('mpc_market'):
                    yield alias.name, (), node.lineno


MODULES = modules()


def test_every_import_goes_down_the_layers():
    wrong = [f'{m}:{line} imports {target}' for m, path in MODULES.items()
             for target, _, line in imports(m, path)
             if role(target) not in ALLOWED[role(m)] and target != 'mpc_market']
    assert not wrong, wrong


def test_no_private_name_is_imported_from_another_module():
    wrong = [f'{m}:{line} imports {target}.{name}' for m, path in MODULES.items()
             for target, names, line in imports(m, path) for name in names
             if name.startswith('_') and target != m]
    assert not wrong, wrong


def test_no_import_cycles():
    graph = {m: {t for t, _, _ in imports(m, p) if t in MODULES and t != m} for m, p in MODULES.items()}
    state, cycles = {}, []

    def visit(m, stack):
        state[m] = 'open'
        for t in sorted(graph[m]):
            if state.get(t) == 'open':
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t, stack + [t])
        state[m] = 'done'
    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    # a package's __init__ re-exporting its own modules is not a cycle between roles
    cycles = [c for c in cycles if not any(x == 'mpc_market' for x in c)]
    assert not cycles, cycles


def test_every_module_says_what_it_is_for():
    undocumented = [m for m, path in MODULES.items() if not ast.get_docstring(parsed(path))]
    assert not undocumented, undocumented


def test_the_public_api_is_documented_and_typed():
    assert mpc_market.__doc__ and len(mpc_market.__all__) == len(set(mpc_market.__all__))
    for name in mpc_market.__all__:
        obj = getattr(mpc_market, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            assert inspect.getdoc(obj), f'{name} has no docstring'
    for function in (mpc_market.load_book, mpc_market.load_meter_readings, mpc_market.clear, mpc_market.settle):
        doc = inspect.getdoc(function)
        assert 'Args:' in doc and 'Returns:' in doc and 'Raises:' in doc, function.__name__
        signature = inspect.signature(function)
        assert signature.return_annotation is not inspect.Signature.empty
        assert all(p.annotation is not inspect.Parameter.empty for p in signature.parameters.values())


def test_importing_the_api_starts_no_mpc_runtime():
    import subprocess
    import sys
    code = 'import sys, mpc_market; help(mpc_market); assert "mpyc.runtime" not in sys.modules'
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert 'clear(book' in proc.stdout and 'settle(book' in proc.stdout


def test_a_daemon_loads_aiohttp_only_where_it_serves_http():
    """aiohttp (the metrics endpoint, the operator page) is about 0.1 s of a daemon's start: a node,
    broker or aggregator without an HTTP address never imports it; serving metrics does."""
    import subprocess
    import sys
    code = ('import sys, mpc_market.net.node, mpc_market.net.broker, mpc_market.stats.service; '
            'assert not [m for m in sys.modules if m.split(".")[0] == "aiohttp"]; '
            'from mpc_market.net import metrics_endpoint; assert "aiohttp.web" in sys.modules')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


JOB_FILES = {'job.json', 'clearing.json', 'shares.npy', 'readings.npy', 'held.json', 'results.npy', 'settlement.npy',
             'retailer.npy', 'public.json', 'own_orders.npy', 'own_results.npy', 'node.log', 'party.log', 'ready',
             'flex_results.npy', 'delivery.npy', 'delivery_public.json', 'delivery.json'}


def test_the_job_directory_is_named_only_by_jobdir():
    """The MPC job's files are a protocol between processes: one module (mpc/jobs.py) names them."""
    wrong = [f'{m}:{node.lineno} names {node.value!r}' for m, path in MODULES.items() if m != 'mpc_market.mpc.jobs'
             for node in nodes(path)
             if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in JOB_FILES]
    assert not wrong, wrong


def test_no_servicer_aborts_outside_the_one_map():
    """Servicers raise typed MarketErrors; net/server.py's abort (status_of) alone turns them into
    status codes, so a refusal has one code wherever it is raised."""
    wrong = [f'{m}:{node.lineno}' for m, path in MODULES.items() if m != 'mpc_market.net.server'
             for node in nodes(path)
             if isinstance(node, ast.Attribute) and node.attr == 'abort' and isinstance(node.value, ast.Name)
             and node.value.id == 'context']
    assert not wrong, wrong


def test_no_assert_decides_on_input_in_the_package():
    """python -O removes asserts: a check that input decides must be a real one."""
    wrong = [f'{m}:{node.lineno}' for m, path in MODULES.items()
             for node in nodes(path) if isinstance(node, ast.Assert)]
    assert not wrong, wrong


# (module, assignment target) allowed to set another object's attribute, and why
INTERNALS = 'mpc_market.mpc.mpyc_internals'
FOREIGN_ATTRIBUTE_WRITES = {
    # the one adapter to MPyC's internals: it hardens MPyC (no pickle, authenticated links) by design
    *((INTERNALS, t) for t in ('mpyc_runtime.pickle', 'thresha.np_random_split', 'signed.signed',
                                'thresha._recombination_vector', 'rt.options.ssl', 'rt.start_time', 'peer.protocol')),
    # the standard library's ssl API is configured by attribute
    *((INTERNALS, t) for t in ('context.minimum_version', 'context.verify_mode',
                                'context.hostname_checks_common_name')),
    # MPyC reads its options from sys.argv when it is imported
    ('mpc_market.mpc.node', 'sys.argv'), ('mpc_market.mpc.inprocess', 'sys.argv'),
    ('mpc_market.mpc.flex_local', 'sys.argv'),  # the flexibility delivery party's entry point, as mpc.node's
}


def foreign_attribute_writes(path):
    """(line, target) of every assignment to an attribute of something other than self or cls."""
    for node in nodes(path):
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
        for target in targets:
            for sub in ast.walk(target):
                if isinstance(sub, ast.Attribute) and isinstance(sub.ctx, ast.Store):
                    if not (isinstance(sub.value, ast.Name) and sub.value.id in ('self', 'cls')):
                        yield node.lineno, ast.unparse(sub)


def test_no_module_sets_another_objects_attributes():
    """State changes inside its own class: a phase returns what it computed (MarketNode's phases, a
    JobSpec variant by dataclasses.replace) instead of writing into an object it was handed."""
    wrong = [f'{m}:{line} sets {target}' for m, path in MODULES.items()
             for line, target in foreign_attribute_writes(path) if (m, target) not in FOREIGN_ATTRIBUTE_WRITES]
    assert not wrong, wrong


def test_the_attribute_check_catches_a_write():
    import textwrap
    sample = textwrap.dedent('''
        def phase(node, spec):
            node.valid = True
            spec.participants += ['x']
            self_like = node
            self_like.deviation = 1
            self.fine = 1
    ''')
    import tempfile
    with tempfile.NamedTemporaryFile('w', suffix='.py', delete=False) as f:
        f.write(sample)
    try:
        assert [t for _, t in foreign_attribute_writes(f.name)] == ['node.valid', 'spec.participants',
                                                                   'self_like.deviation']
    finally:
        os.remove(f.name)


# what the package never raises itself: each error raised on purpose is a MarketError (common/errors.py)
BUILTIN_ERRORS = {'ValueError', 'RuntimeError', 'TypeError', 'KeyError', 'Exception'}


def builtin_raises(tree_nodes):
    """(line, name) of every ``raise Name(...)`` or ``raise Name`` of a class in BUILTIN_ERRORS."""
    for node in tree_nodes:
        if isinstance(node, ast.Raise) and node.exc is not None:
            raised = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(raised, ast.Name) and raised.id in BUILTIN_ERRORS:
                yield node.lineno, raised.id


def test_every_error_raised_on_purpose_is_a_market_error():
    """Callers catch a class, never a message: BadParameter (a ValueError), Malformed, Tampered,
    EngineError, ... say what went wrong; a bare ValueError or RuntimeError says nothing."""
    wrong = [f'{m}:{line} raises {name}' for m, path in MODULES.items()
             for line, name in builtin_raises(nodes(path))]
    assert not wrong, wrong


def test_the_raise_check_catches_a_builtin_error():
    import textwrap
    sample = textwrap.dedent('''
        def check(x):
            if x < 0:
                raise ValueError('negative')
            if x == 1:
                raise RuntimeError
            try:
                return {}[x]
            except KeyError as exc:
                raise exc from None
            except LookupError:
                raise
            raise BadParameter('x', 'too large') from Exception('why')
    ''')
    assert list(builtin_raises(ast.walk(ast.parse(sample)))) == [(4, 'ValueError'), (6, 'RuntimeError')]

"""SECURITY.md stays true: every test its threat table names exists, every numbered finding of
the adversarial review has a row, and every row names at least one test."""

import ast
import functools
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEST_ID = re.compile(r'`(tests/[\w/]+\.py)::(\w+)`')


def _threat_rows():
    with open(os.path.join(ROOT, 'SECURITY.md')) as f:
        text = f.read()
    section = text.split('## Threats, mitigations and the tests that attack them', 1)[1].split('\n## ', 1)[0]
    return [line for line in section.splitlines() if line.startswith('| ') and not line.startswith('| threat')
            and not line.startswith('|---')]


@functools.cache  # a file named in many rows is parsed once
def _test_functions(path):
    with open(os.path.join(ROOT, path)) as f:
        tree = ast.parse(f.read())
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith('test_')}


def test_every_named_test_exists():
    rows = _threat_rows()
    assert len(rows) >= 20
    for row in rows:
        cells = [c.strip() for c in row.strip('|').split('|')]
        assert len(cells) == 3 and cells[1], row
        named = TEST_ID.findall(cells[2])
        assert named, f'no test named for: {cells[0]}'
        for path, name in named:
            assert os.path.exists(os.path.join(ROOT, path)), path
            assert name in _test_functions(path), f'{path}::{name} does not exist'


def test_every_finding_of_the_review_has_a_row():
    numbered = {int(m.group(1)) for row in _threat_rows() if (m := re.match(r'\| (\d+)\. ', row))}
    assert numbered == set(range(1, 13))
    threats = ' '.join(row.split('|')[1] for row in _threat_rows())
    for threat in ('impersonation', 'Sybil', 'manipulation', 'eavesdropping', 'disputes', 'denial of service',
                   'single point of failure', 'inference by the broker'):
        assert threat in threats, threat

"""`mpc-market stats --help` lists every step with a line, and each `stats STEP --help` says what
the step does before its options (issue 22, problem 10: the steps had no description)."""

import pytest

from helpers import cli

STEPS = ('keygen', 'encrypt', 'submit', 'aggregate', 'decrypt', 'aggregator', 'fetch')


def test_stats_help_lists_every_step_with_a_line():
    result = cli('stats', '--help')
    assert result.returncode == 0
    listed = ' '.join(result.stdout.split('positional arguments:')[1].split('options:')[0].split())
    for step, line in zip(STEPS, STEPS[1:] + ('',), strict=True):
        described = listed.split(f' {step} ', 1)[1].split(f' {line} ')[0] if line else listed.split(f' {step} ', 1)[1]
        assert len(described) > 20, (step, described)


@pytest.mark.parametrize('step', STEPS)
def test_each_stats_step_has_a_description(step):
    result = cli('stats', step, '--help')
    assert result.returncode == 0
    before_options = result.stdout.split('\noptions:')[0]
    description = before_options.split('\n\n', 1)[1].strip()  # after the usage paragraph
    assert len(description) > 60 and all(len(line) <= 79 for line in description.splitlines()), description
    assert 'example:' in result.stdout

"""A zoned market deployed as `generate --zones` writes it (issue 22, problem 6).

The generated market file carries its [zones] table, so a deployment uses it as is: a round opens,
every participant submits, the communities clear and then trade across at the network fee, the
meters upload, the round settles; public results, every participant's rows and bills equal the
local `clear`/`settle --engine plain` on the same files. A zoned market without [zones] is refused
at `round open` with its reason, once, and never reaches a node's clearing.
"""

import csv

import pytest

from helpers import Market, cli, read_rows

pytestmark = [pytest.mark.deployment, pytest.mark.slow]
DAY = '2026-12-01'


def generated_rows(orders_path):
    with open(orders_path) as f:
        return [(r['participant'], int(r['slot']), r['side'], int(r['energy_wh']), r['limit_price'])
                for r in csv.DictReader(f)]


def test_a_generated_zoned_market_deploys_clears_and_settles_like_the_local_settle(tmp_path):
    community = tmp_path / 'community'
    cli('generate', '--participants', 25, '--slots', 4, '--zones', 2, '--seed', 5, '--out', community, check=True)
    market_text = (community / 'market.toml').read_text()
    assert '[zones]' in market_text
    rows = generated_rows(community / 'orders.csv')
    slots = sorted({r[1] for r in rows})
    market = Market(tmp_path, rows=rows, market=market_text)
    try:
        # the same market without its [zones] table: refused at once, with its reason, nothing opened
        no_table = tmp_path / 'no-table.toml'
        no_table.write_text(market_text[:market_text.index('\n# each participant')] + '\n')
        refused = market.client('round', 'open', '--round', 'bad', '--slots', f'{slots[0]}-{slots[-1]}', '--market',
                                no_table, '--gate-closure-in', 120, check=False)
        assert refused.returncode == 2 and 'needs a [zones] table' in refused.stderr, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert 'bad' not in market.client('round', 'list').stdout

        market.client('round', 'open', '--round', 'z1', '--slots', f'{slots[0]}-{slots[-1]}', '--market',
                      market.market, '--gate-closure-in', 120, '--readings-deadline-in', 600, '--day', DAY)
        cli('submit', '--broker', market.broker, '--keys', market.keys, '--round', 'z1', '--orders',
            community / 'orders.csv', check=True)  # the generated file as is, zone column included
        market.close_and_wait('z1')
        market.check_results('z1')
        upload = market.client('meter', 'submit', '--readings', community / 'readings.csv', '--orders',
                               market.orders, '--day', DAY)
        assert f'{len(market.participants)} accepted by every node, 0 not' in upload.stdout, upload.stdout
        market.client('round', 'close', '--round', 'z1')
        settled = market.client('round', 'settled', '--round', 'z1', '--wait', 180, check=False)
        assert settled.returncode == 0 and 'settled' in settled.stdout, settled.stdout + settled.stderr

        local = tmp_path / 'local'
        cli('settle', '--engine', 'plain', '--orders', community / 'orders.csv', '--readings',
            community / 'readings.csv', '--config', community / 'market.toml', '--out', local, '--quiet', check=True)
        expected = {b['participant']: b for b in read_rows(local / 'bills.csv')}
        assert set(expected) == set(market.participants)
        for p, bill in expected.items():
            out = tmp_path / f'bill-{p}'
            market.client('results', '--participant', p, '--bill', '--round', 'z1', '--orders', market.orders,
                          '--out', out)
            assert read_rows(out / 'bills.csv') == [bill], p
    finally:
        market.stop()

"""The topic replay gives the golden file backtests' verdicts, over a real broker.

The traffic of the golden cases (tests/golden) is produced to a 4-partition
``rum.beacons``, keyed by session as rumgate's own producers do, and replayed with
``rumgate backtest --topic``: the verdicts are the file backtest's, one for one, byte for
byte. (The file backtest closes its last windows at the end of the file, which a replay,
like the live run, does not; the cases chosen stop at a decision before that.)
"""

from __future__ import annotations

import orjson
import pytest
from click.testing import CliRunner

from streams.cli import cli
from streams.offline.simulate import SCENARIOS
from tests.golden.scenarios import CASES

REPLAYED = ("lcp-regression", "inp-mobile-segments", "late-start")


@pytest.mark.parametrize("case", [c for c in CASES if c.name in REPLAYED], ids=REPLAYED)
def test_the_topic_replay_gives_the_file_backtests_verdicts(pipeline, tmp_path, case):
    traffic = tmp_path / "traffic.ndjson"
    case.write_traffic(traffic)
    beacons = [orjson.loads(line) for line in traffic.read_bytes().splitlines()]
    pipeline.produce(beacons, per_record=50)
    sc = SCENARIOS[case.scenario]
    common = ["--app", sc.app, "--canary", sc.canary, "--baseline", sc.baseline, *case.args]
    if case.policy is not None:
        policy = tmp_path / "policy.yaml"
        policy.write_text(case.policy)
        common += ["--policy", str(policy)]
    from_file, from_topic = tmp_path / "file.ndjson", tmp_path / "topic.ndjson"
    runner = CliRunner()
    filed = runner.invoke(cli, ["backtest", str(traffic), "-q", "-o", str(from_file), *common])
    replayed = runner.invoke(cli, ["backtest", "--topic", pipeline.topics.beacons, "--broker", pipeline.broker.url,
                                   "--from", str(sc.start_ms), "-q", "-o", str(from_topic), *common])
    assert replayed.exit_code == filed.exit_code == 1, replayed.output
    assert from_topic.read_bytes() == from_file.read_bytes()
    assert orjson.loads(from_topic.read_bytes().splitlines()[-1])["verdict"] == "rollback"

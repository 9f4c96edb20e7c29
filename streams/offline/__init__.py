"""Rollouts judged away from the live worker, and traffic to judge.

- :mod:`~streams.offline.backtest`  ``rumgate backtest`` over NDJSON(.gz) files
- :mod:`~streams.offline.replay`    ``rumgate backtest --topic``: a time range of ``rum.beacons``
- :mod:`~streams.offline.simulate`  realistic, seeded RUM traffic with injectable regressions
- :mod:`~streams.offline.feed`      simulated traffic produced into ``rum.beacons`` (the demo)

The backtest and the replay both run :class:`detectors.pipeline.run.Run`, the driver the live
worker's stage 1 and judge code share, so the same data gives the same verdicts. May import
:mod:`detectors`, :mod:`streams.live.topics` (the replay reads the topic) and aiokafka;
nothing from :mod:`streams.cli`, :mod:`streams.http` or :mod:`streams.ingest`.
"""

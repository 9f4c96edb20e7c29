"""The pipeline from beacon records to verdicts, without Kafka: what every path runs.

- :mod:`~detectors.pipeline.aggregate`  stage 1 for one partition: records in, window
  summaries, dead letters and resume points out
- :mod:`~detectors.pipeline.judge`      stage 2: merges the partitions' summaries once every
  partition has passed a window, and runs each rollout's gate, overrides and dry-run policies
- :mod:`~detectors.pipeline.run`        :class:`~detectors.pipeline.run.Run`, the one driver:
  partitioned records + rollout + overrides → verdicts, used by the file backtest and the
  topic replay; the live agents call the same two stages

Pure like the rest of :mod:`detectors`: it imports only :mod:`detectors` and the standard library, never
:mod:`streams`, Faust, aiokafka, aiohttp or asyncio, and reads no clock.
"""

"""rumgate's decision core: pure, synchronous, deterministic.

Everything that decides lives here and nothing here touches Kafka, HTTP, asyncio, the
environment or the wall clock, so the live agents, the file backtest and a topic replay
run the same code and reach the same verdicts from the same input.

- :mod:`detectors.beacon`   the canonical beacon, its validation, the columnar batch
- :mod:`detectors.decode`   raw records → columnar batch + rejects with reasons
- :mod:`detectors.sketch`   mergeable log-bucket quantile sketch (DDSketch mapping)
- :mod:`detectors.windows`  event-time tumbling windows and per-cohort summaries
- :mod:`detectors.etest`    conditional binomial e-processes (the statistics engine)
- :mod:`detectors.policy`   declarative policies, refused with line and reason when wrong
- :mod:`detectors.gate`     window summaries of a rollout → verdict with evidence
- :mod:`detectors.verdict`  the verdict event
- :mod:`detectors.rollout`  the rollout: which release against which, policy, start, split
- :mod:`detectors.override` human overrides (force promote, hold or rollback, with who and why)
- :mod:`detectors.incident` global incidents and the post-promotion watch
- :mod:`detectors.anomaly`  online detectors for series without a control (NAB-scored)
- :mod:`detectors.pipeline` stage 1, stage 2 and :class:`~detectors.pipeline.run.Run`, the
  one driver every path (live, file backtest, topic replay) goes through

Imports: numpy, river, orjson, PyYAML and :mod:`detectors` itself; never :mod:`streams`,
Faust, aiokafka, aiohttp or asyncio.
"""

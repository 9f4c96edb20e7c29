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
"""

"""The live worker: the Faust app, its agents, topics, settings and the embedded broker.

- :mod:`~streams.live.app`       builds the Faust app
- :mod:`~streams.live.runtime`   what the agents share: the app, its topics, the two stages' state
- :mod:`~streams.live.agents`    stage 1 (``aggregate``) and stage 2 (``judge``), thin over
  :mod:`detectors.pipeline`, and heartbeats
- :mod:`~streams.live.control`   followers of the control topics (``rum.rollouts``,
  ``rum.overrides``, ``rum.verdicts.latest``)
- :mod:`~streams.live.serving`   the worker's HTTP server: the API and the ingestion routes
- :mod:`~streams.live.topics`    the topics, created on start, and helpers to read them
- :mod:`~streams.live.settings`  worker settings from ``RUMGATE_*`` environment variables
- :mod:`~streams.live.broker`    the embedded Kafka-compatible broker (Tansu)
- :mod:`~streams.live.worker`    running a worker: find or start the broker, create topics, run

May import :mod:`detectors`, :mod:`streams.http`, :mod:`streams.ingest`, Faust, aiokafka and
aiohttp; nothing from :mod:`streams.cli` or :mod:`streams.offline`.
"""

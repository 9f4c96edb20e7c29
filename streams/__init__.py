"""Everything of rumgate that touches Kafka, HTTP, files, the terminal or a clock.

All decisions are made by :mod:`detectors`; the packages here move data to and from it:

- :mod:`streams.live`     the worker: Faust app and agents, topics, settings, embedded broker
- :mod:`streams.http`     the worker's HTTP API, OpenAPI, webhooks, Prometheus metrics
- :mod:`streams.ingest`   ``POST /v1/beacons``: formats, dedupe, the browser snippet
- :mod:`streams.offline`  file backtest and topic replay (through the one driver), simulator, feed
- :mod:`streams.cli`      the ``rumgate`` command, one module per command
- :mod:`streams.client`   :class:`~streams.client.VerdictSubscriber`, for Python controllers

Imports point one way: ``cli`` may use every package; ``live`` uses ``http`` and ``ingest``;
``offline`` uses ``live.topics`` only; ``http`` and ``ingest`` use :mod:`detectors` alone.
"""

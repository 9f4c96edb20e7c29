"""Beacon ingestion: ``POST /v1/beacons`` from browsers and SDKs into ``rum.beacons``.

- :mod:`~streams.ingest.endpoint`  the handler: CORS, limits, parsing, stamping, dedupe,
  batching into records, produce (``docs/rum-formats.md``)
- :mod:`~streams.ingest.formats`   request bodies and SDK payloads → canonical beacons (pure)
- :mod:`~streams.ingest.dedupe`    recent beacon ids in a fixed-size table
- :mod:`~streams.ingest.snippet`   ``GET /v1/rumgate.js``, the browser snippet (sources in ``web/``)

May import :mod:`detectors`, aiohttp, msgspec and numpy, and nothing else from
:mod:`streams`: the endpoint produces through a sink it is handed, so it needs no Kafka
client. :mod:`~streams.ingest.formats` imports only :mod:`detectors`, msgspec and orjson,
and does no I/O.
"""

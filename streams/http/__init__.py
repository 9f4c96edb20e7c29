"""The worker's HTTP surface, served beside ingestion on ``RUMGATE_HTTP``.

- :mod:`~streams.http.api`       the application: routes, middleware, what each handler reaches
- :mod:`~streams.http.rollouts`  rollouts, verdicts and overrides (the Argo Rollouts contract)
- :mod:`~streams.http.flagger`   Flagger's webhooks
- :mod:`~streams.http.pages`     the rollout pages (``/``, ``/rollouts/{id}``), charts in :mod:`~streams.http.charts`
- :mod:`~streams.http.series`    the series behind the charts (``/v1/rollouts/{id}/series``)
- :mod:`~streams.http.auth`      bearer-token checks (``RUMGATE_API_TOKEN``)
- :mod:`~streams.http.backend`   what the API serves, handed in by the worker
- :mod:`~streams.http.replies`   JSON answers, request bodies, the error middleware
- :mod:`~streams.http.health`    ``/healthz`` and ``/metrics``
- :mod:`~streams.http.openapi`   the OpenAPI 3.1 description served at ``/v1/openapi.json``
- :mod:`~streams.http.webhooks`  signed, retried webhooks on verdict change
- :mod:`~streams.http.metrics`   the Prometheus metrics

May import :mod:`detectors`, aiohttp and prometheus_client; no other :mod:`streams` package
(the worker hands the API its state), so every handler can be tested without a broker.
"""

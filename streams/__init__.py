"""Everything of rumgate that touches files, the terminal, a clock, Kafka or HTTP.

Today: the ``rumgate`` CLI (:mod:`streams.cli`), the traffic simulator
(:mod:`streams.offline.simulate`), the file backtest (:mod:`streams.offline.backtest`) and the in-process
demo (:mod:`streams.cli.demo`). All decisions are made by :mod:`detectors`.
"""

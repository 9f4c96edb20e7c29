"""Everything of rumgate that touches files, the terminal, a clock, Kafka or HTTP.

Today: the ``rumgate`` CLI (:mod:`streams.cli`), the traffic simulator
(:mod:`streams.simulate`), the file backtest (:mod:`streams.backtest`) and the in-process
demo (:mod:`streams.demo`). All decisions are made by :mod:`detectors`.
"""

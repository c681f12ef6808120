"""The parts of ``eval/bench.py``: each module measures one thing and returns typed records (``records.py``);
``report/`` turns them into the printed table, ``eval/results/bench.md`` and ``eval/results/bench.json``."""

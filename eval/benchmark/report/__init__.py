"""Results as bench.json (every record, plus the ratios) and as tables: printed with rich, written as Markdown.

Both renderings read the JSON form, so a `--scale` run can merge into a main run's file (and back) and the
Markdown always shows everything measured so far, each part with its own date. ``files`` reads and writes
bench.json and bench.md, ``targets`` judges the goals, ``tables`` puts bench.md's tables in order; ``service``,
``peer`` and ``format`` hold the tables of each section and the cells they are made of.
"""

from benchmark.report.files import merge_batch, merge_previous, plain, write
from benchmark.report.format import Table
from benchmark.report.tables import markdown, tables
from benchmark.report.targets import targets

__all__ = ["Table", "markdown", "merge_batch", "merge_previous", "plain", "tables", "targets", "write"]

"""benchmarks.md from measured runs: published reference rows, measured tables, performance, plot.

One concept per file:
- `columns`: the paper's benchmark columns and how a cell is written;
- `reference`: the published figures, benchmarks/reference.json (data in the repository);
- `runs`: a results index and the metrics.json files it names;
- `compare`: SSA minus SEED / MoCo v2, and the SSA / MoCo v2 cost, computed from the numbers;
- `performance`: benchmarks/results/*.json;
- `plot`: the comparison PNG;
- `markdown`: the document; `generate`: validate everything, then write.
"""
from transfer.report.generate import make_benchmarks, publish_index
from transfer.report.runs import new_index

__all__ = ["make_benchmarks", "new_index", "publish_index"]

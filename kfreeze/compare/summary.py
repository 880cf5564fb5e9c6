"""``python -m kfreeze.compare.summary``: one CSV row per model from metrics/*.json, for ``dvc plots``.

DVC plots need one file with a row per data point; the verify stages write one JSON per model.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

COLUMNS = ("model", "ops_frozen", "ops_optimized", "bytes_frozen", "bytes_optimized", "max_abs_diff")


def summary_rows(metrics_dir: Path) -> list[dict]:
    rows = []
    for path in sorted(Path(metrics_dir).glob("*.json")):
        data = json.loads(path.read_text())
        rows.append({"model": path.stem, **{k: data.get(k) for k in COLUMNS[1:]}})
    return rows


def write_summary(metrics_dir: Path, out: Path) -> None:
    from kfreeze import atomic

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(summary_rows(metrics_dir))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out, buf.getvalue())


if __name__ == "__main__":
    metrics, out = (sys.argv[1:3] + ["metrics", "plots/models.csv"][len(sys.argv[1:3]):])
    write_summary(Path(metrics), Path(out))

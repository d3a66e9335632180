"""Re-compute Recall@K / NDCG@K (or HR/NDCG for one target) from `liverec evaluate --save-rankings`
output and the raw data files, with plain Python and none of liverec's code, and compare them
with the run's metrics.json.

    python benchmarks/check_rankings.py RUN_DIR RANKINGS.parquet --k 20

Ground truth: `test.txt` of a LightGCN folder (given split), or the last item of each line of a
sequence file (leave-last-out).
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path


def test_truth(data: str) -> dict[str, set[str]]:
    path = Path(data)
    if not path.exists():
        path = Path(os.environ.get("LIVEREC_DATA", "")) / data
    if (path / "test.txt").exists():
        truth = {}
        for line in (path / "test.txt").read_text().splitlines():
            tokens = line.split()
            if len(tokens) > 1:
                truth[tokens[0]] = set(tokens[1:])
        return truth
    files = [path] if path.is_file() else sorted(path.glob("*.txt"))
    truth = {}
    for line in files[0].read_text().splitlines():
        tokens = line.split()
        truth[tokens[0]] = {tokens[-1]}
    return truth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("rankings", type=Path)
    ap.add_argument("--k", type=int, default=20)
    args = ap.parse_args()
    import pyarrow.parquet as pq

    metrics = json.loads((args.run_dir / "metrics.json").read_text())
    truth = test_truth(metrics["data"])
    recall, ndcg = [], []
    for row in pq.read_table(args.rankings).to_pylist():
        if row["split"] != "test":
            continue
        relevant = truth[str(row["user"])]
        top = [str(i) for i in row["items"][: args.k]]
        dcg = sum(1 / math.log2(r + 2) for r, item in enumerate(top) if item in relevant)
        idcg = sum(1 / math.log2(r + 2) for r in range(min(args.k, len(relevant))))
        recall.append(sum(item in relevant for item in top) / len(relevant))
        ndcg.append(dcg / idcg)
    ours = {f"Recall@{args.k}": sum(recall) / len(recall), f"NDCG@{args.k}": sum(ndcg) / len(ndcg)}
    print(f"users re-checked: {len(recall)}")
    for name, value in ours.items():
        reported = metrics["test"].get(name)
        print(f"{name}: recomputed {value:.6f}  metrics.json {reported:.6f}  diff {abs(value - reported):.2e}")


if __name__ == "__main__":
    main()

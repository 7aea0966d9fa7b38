"""Benchmark: our item neighbours vs implicit's ``CosineRecommender(K).fit`` on one matrix.

A seeded power-law user x item matrix (default 1,000,000 users x 50,000 items x 10,000,000
distinct interactions, weighted strengths) is generated once and saved; each contender then
runs in its own child process that loads the matrix, times only its neighbour step and
reports its peak RSS (``VmHWM``, which includes the loaded input). Output: one JSON
object ``{neighbours_s, implicit_s, ratio, peak_rss_mb, implicit_peak_rss_mb, users, items,
interactions, k, seed}`` on stdout and, with ``--out``, in a file. ``ratio`` is
neighbours_s / implicit_s (goal <= 1.0); ``peak_rss_mb`` is the neighbour step's process.

    .venv/bin/python bench/neighbours_bench.py --out /tmp/neighbours_bench.json
    .venv/bin/python bench/neighbours_bench.py --users 20000 --items 2000 --interactions 200000

Note: implicit counts an item as its own neighbour, so its K=20 lists hold 19 others;
ours hold 20 others and break ties by item id exactly (see ``marketing.neighbours``).
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

logger = logging.getLogger("neighbours_bench")

REPO_ROOT = Path(__file__).resolve().parents[1]


USER_EXPONENT = 0.5
"""Zipf exponent of user activity: at 1M users x 10M interactions the heaviest user has
~5,000 items. (0.9 would give users with all 50,000 items and ~4e10 scalar products in
X^T X, a shop that does not exist; our first full-size run used it: see the README.)"""

ITEM_EXPONENT = 0.9
"""Zipf exponent of item popularity (blockbusters and a long tail)."""


def power_law_matrix(
    users: int,
    items: int,
    interactions: int,
    seed: int,
    user_exponent: float = USER_EXPONENT,
    item_exponent: float = ITEM_EXPONENT,
) -> sp.csr_matrix:
    """Seeded users x items float32 CSR with exactly ``interactions`` distinct entries.

    Users and items are drawn with Zipf-like weights ``1 / rank**exponent`` (heavy users and
    blockbuster items, long tails), then deduplicated; strengths are event weights 1/3/5
    times a decay factor in (0.1, 1].
    """
    if interactions > users * items:
        raise ValueError(f"interactions must be <= users * items, got {interactions}")
    rng = np.random.default_rng(seed)

    def draw(n_values: int, size: int, exponent: float) -> np.ndarray:
        weights = 1.0 / np.arange(1, n_values + 1) ** exponent
        cumulative = np.cumsum(weights / weights.sum())
        labels = rng.permutation(n_values)  # popularity rank -> id, so ids are not sorted
        return labels[np.searchsorted(cumulative, rng.random(size), side="right").clip(
            max=n_values - 1)]

    keys = np.zeros(0, dtype=np.int64)
    while len(keys) < interactions:
        batch = int((interactions - len(keys)) * 1.2) + 1000
        fresh = (draw(users, batch, user_exponent).astype(np.int64) * items
                 + draw(items, batch, item_exponent))
        keys = np.unique(np.concatenate([keys, fresh]))
    keys = rng.permutation(keys)[:interactions]
    keys.sort()
    rows, cols = np.divmod(keys, items)
    del keys
    strength = (rng.choice([1.0, 3.0, 5.0], size=interactions, p=[0.7, 0.2, 0.1])
                * rng.uniform(0.1, 1.0, size=interactions)).astype(np.float32)
    matrix = sp.csr_matrix((strength, (rows, cols)), shape=(users, items))
    matrix.sort_indices()
    return matrix


def _peak_rss_mb() -> float:
    """Peak RSS of this process image in MB.

    ``VmHWM`` from /proc is reset by exec, unlike ``ru_maxrss``, which Linux carries over
    from the parent across fork + exec (a child would report the generator's peak).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _worker(kind: str, matrix_path: Path, k: int) -> dict:
    """Child process: load the matrix, time one neighbour step, report time and peak RSS."""
    matrix = sp.load_npz(matrix_path).tocsr()
    if kind == "neighbours":
        sys.path.insert(0, str(REPO_ROOT / "include"))
        from marketing.interactions import InteractionMatrix
        from marketing.neighbours import item_neighbours

        purchased = sp.csr_matrix(matrix.shape, dtype=bool)
        labelled = InteractionMatrix(
            strength=matrix,
            user_ids=np.arange(matrix.shape[0], dtype=np.int64),
            item_ids=np.arange(matrix.shape[1], dtype=np.int64),
            purchased=purchased,
        )
        start = time.perf_counter()
        result = item_neighbours(labelled, k=k)
        seconds = time.perf_counter() - start
        rows = len(result)
    elif kind == "implicit":
        from implicit.nearest_neighbours import CosineRecommender

        model = CosineRecommender(K=k)
        start = time.perf_counter()
        model.fit(matrix, show_progress=False)
        seconds = time.perf_counter() - start
        rows = int(model.similarity.nnz)
    else:
        raise ValueError(f"worker kind must be 'neighbours' or 'implicit', got {kind!r}")
    return {"seconds": seconds, "peak_rss_mb": _peak_rss_mb(), "rows": rows}


def _run_worker(kind: str, matrix_path: Path, k: int) -> dict:
    completed = subprocess.run(
        [sys.executable, __file__, "--worker", kind, "--matrix", str(matrix_path), "--k", str(k)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def run(
    users: int,
    items: int,
    interactions: int,
    k: int,
    seed: int,
    user_exponent: float = USER_EXPONENT,
    item_exponent: float = ITEM_EXPONENT,
) -> dict:
    """Generate the matrix, run both contenders in child processes, return the JSON dict."""
    start = time.perf_counter()
    matrix = power_law_matrix(users, items, interactions, seed, user_exponent, item_exponent)
    logger.info("generated %d x %d, %d nnz in %.1f s", *matrix.shape, matrix.nnz,
                time.perf_counter() - start)
    with tempfile.TemporaryDirectory(prefix="neighbours_bench_") as folder:
        path = Path(folder) / "matrix.npz"
        sp.save_npz(path, matrix, compressed=False)
        del matrix
        ours = _run_worker("neighbours", path, k)
        theirs = _run_worker("implicit", path, k)
    return {
        "neighbours_s": round(ours["seconds"], 3),
        "implicit_s": round(theirs["seconds"], 3),
        "ratio": round(ours["seconds"] / theirs["seconds"], 3),
        "peak_rss_mb": round(ours["peak_rss_mb"], 1),
        "implicit_peak_rss_mb": round(theirs["peak_rss_mb"], 1),
        "users": users,
        "items": items,
        "interactions": interactions,
        "k": k,
        "seed": seed,
        "user_exponent": user_exponent,
        "item_exponent": item_exponent,
        "neighbour_rows": ours["rows"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--interactions", type=int, default=10_000_000)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--user-exponent", type=float, default=USER_EXPONENT)
    parser.add_argument("--item-exponent", type=float, default=ITEM_EXPONENT)
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--worker", choices=["neighbours", "implicit"], help=argparse.SUPPRESS)
    parser.add_argument("--matrix", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(args.worker, args.matrix, args.k)))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    result = run(args.users, args.items, args.interactions, args.k, args.seed,
                 args.user_exponent, args.item_exponent)
    text = json.dumps(result, sort_keys=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

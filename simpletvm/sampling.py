"""Chameleon's adaptive sampling: measure one representative per cluster of the proposed
candidates instead of the whole batch (JobSpec.sampling "chameleon"; an option the bench
compares with measuring the batch as proposed).

Ahn et al., "Chameleon: Adaptive Code Optimization for Expedited Deep Neural Network
Compilation" (ICLR 2020), saw that the configurations a search proposes in one round bunch up,
so measuring all of them spends trials on near-duplicates. Their adaptive sampling runs k-means
on the round's configurations for a range of k, takes k at the knee of the loss (inertia) curve
and measures the configuration nearest each centroid; their sample synthesis replaces an
invalid or repeated configuration by one assembled from the most frequent knob values.

What is adapted for MetaSchedule, and why:
- There are no knobs: a candidate is a schedule trace. What the cost model knows of it are its
  per-store features (TVM's PerStoreFeature, one row of numbers per buffer store, a varying
  number of rows), so a candidate is the mean and the max of those rows, side by side
  (`vectors`), each column standardized so that no feature's scale rules the distances, and
  the candidates are clustered on their leading principal components.
- The knee is Kneedle's (Satopaa et al. 2011): the k whose normalized inertia lies farthest
  below the chord from k=1 to the largest k. The curve starts at k=1 even when k may not (two
  clear clusters show only as the drop from one to two), is made non-increasing (the best
  inertia can only fall with k; k-means from random seeds sometimes misses it), and is taken
  on a log scale: on a linear one the big early drops flatten the rest, and seven clear
  clusters gave k=6, the last merge costing little of the total though nearly all of what
  was left.
- k runs up to the batch the allocation gave the round, so a round measures at most that
  batch, and fewer when the candidates bunch up: the trials saved pay for later rounds.
- Sample synthesis cannot be done: a trace is not assembled from the most frequent values of its
  features. Instead a representative that cannot be measured (measured in an earlier round, or
  a candidate whose features are not finite) gives way to the next-nearest member of its
  cluster that can be; a cluster with none gives none. The search stage clusters all the
  search proposed, the schedules it re-proposes from earlier rounds too (they show where its
  proposals bunch), so a cluster around measured schedules is measured by its nearest new
  member: what synthesis from the most frequent knob values approximates.
- k-means is a few lines of numpy here (k-means++ seeds, Lloyd's iterations until no point
  moves, a few restarts keeping the least inertia), seeded, so a round's choice is the same
  every time. scipy's kmeans2 runs all its iterations with no test of convergence (and its vq
  is slow): the curve for a batch of 32 on 128 candidates of 328 features took it 11 s on a
  busy 2-core machine, against 0.8 s here (before the principal components).

Pure numpy: the search stage extracts the features with TVM and calls `choose`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["choose", "clusters", "knee", "representatives", "vectors"]

MIN_K = 4         # clusters at least (fewer only when fewer distinct candidates)
RESTARTS = 3      # k-means runs per k, the least inertia kept
ITERATIONS = 20   # Lloyd iterations per run (a few hundred points converge in fewer)
MAX_KS = 48       # values of k tried at most (a large batch tries k on a grid)
MAX_DIMS = 24     # principal components the candidates are clustered on


def vectors(per_store: Sequence[np.ndarray]) -> np.ndarray:
    """One row per candidate: the mean, then the max, of each feature over its buffer stores (a
    candidate with no store: zeros). The candidates are one task's, so rows have one width."""
    width = max((m.shape[1] for m in per_store if m.ndim == 2), default=0)
    rows = np.zeros((len(per_store), 2 * width))
    for i, matrix in enumerate(per_store):
        if matrix.ndim == 2 and len(matrix):
            rows[i, :width] = matrix.mean(axis=0)
            rows[i, width:] = matrix.max(axis=0)
    return rows


def choose(features: np.ndarray, batch: int, seed: int, min_k: int = MIN_K,
           usable: Sequence[bool] | None = None) -> list[int]:
    """Indices (ascending, i.e. in the order proposed) of the candidates to measure: one per
    cluster of `features` (a row per candidate), at most `batch`, at least `min_k` unless fewer
    distinct candidates. A cluster's nearest usable member represents it (`usable`: all)."""
    return representatives(clusters(features, batch, seed, min_k), usable)


def clusters(features: np.ndarray, batch: int, seed: int, min_k: int = MIN_K) -> list[list[int]]:
    """The k-means clusters of the rows of `features` for k at the knee of the inertia curve
    (k from `min_k` to `batch`, both capped by the number of distinct rows), each cluster's
    members nearest its centroid first (ties: in input order), clusters in the order of their
    earliest member; empty clusters are left out."""
    points = _points(features)
    if len(points) == 0 or batch < 1:
        return []
    most = min(batch, len(np.unique(points, axis=0)))
    low = max(1, min(min_k, most))
    ks = _ks(low, most)
    rng = np.random.default_rng(seed)
    fits = [_fit(points, k, rng) for k in ks]
    inertia = np.minimum.accumulate([inertia for inertia, _ in fits])
    return _members(points, fits[knee(ks, inertia, low)][1])


def knee(ks: Sequence[int], inertia: Sequence[float], low: int = 1) -> int:
    """Index of the knee of a falling curve of inertia over k (Kneedle on the log of the
    inertia): among the points with k >= `low`, the one farthest below the chord from the first
    point to the last, both axes scaled to 0..1; ties, and a straight or flat curve: the
    earliest."""
    x, y = np.asarray(ks, dtype=float), np.asarray(inertia, dtype=float)
    eligible = x >= low
    if len(x) < 2 or y[0] <= y[-1]:
        return int(np.argmax(eligible))
    y = np.log(y + y[0] * 1e-12)  # a drop to a tenth counts the same at any height
    below = (1 - (x - x[0]) / (x[-1] - x[0])) - (y - y[-1]) / (y[0] - y[-1])
    below = np.where(eligible, below, -np.inf)
    return int(np.argmax(below >= below.max() - 1e-6))  # the earliest of near-ties


def representatives(groups: Sequence[Sequence[int]],
                    usable: Sequence[bool] | None = None) -> list[int]:
    """Each group's first usable member (groups listed nearest first), ascending; a group with
    no usable member gives none."""
    chosen = (next((i for i in group if usable is None or usable[i]), None) for group in groups)
    return sorted(i for i in chosen if i is not None)


def _points(features: np.ndarray) -> np.ndarray:
    """The rows standardized, then on their MAX_DIMS leading principal components (k-means
    costs in proportion to the width; distances change little)."""
    points = np.asarray(features, dtype=float)
    if len(points) == 0:
        return np.zeros((0, 0))
    points = points.reshape(len(points), -1)
    spread = points.std(axis=0)
    points = (points - points.mean(axis=0)) / np.where(spread > 1e-9, spread, 1.0)
    if points.shape[1] <= MAX_DIMS:
        return points
    _, _, axes = np.linalg.svd(points, full_matrices=False)
    return points @ axes[:MAX_DIMS].T


def _ks(low: int, high: int) -> list[int]:
    """1, then `low`..`high` (at most MAX_KS values: a grid when the range is wider)."""
    grid = range(low, high + 1) if high - low < MAX_KS else np.linspace(low, high, MAX_KS)
    return sorted({1, *np.rint(grid).astype(int).tolist()})


def _fit(points: np.ndarray, k: int, rng: np.random.Generator) -> tuple[float, np.ndarray]:
    """(inertia, centroids) of the best of RESTARTS k-means runs."""
    if k == 1:
        centroid = points.mean(axis=0, keepdims=True)
        return float(((points - centroid) ** 2).sum()), centroid
    runs = [_kmeans(points, _seeds(points, k, rng)) for _ in range(RESTARTS)]
    return min(runs, key=lambda run: run[0])


def _seeds(points: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++: each next seed drawn with probability in proportion to its squared distance
    to the nearest seed so far (the caller keeps k at most the number of distinct points)."""
    chosen = [int(rng.integers(len(points)))]
    nearest = ((points - points[chosen[0]]) ** 2).sum(axis=1)
    for _ in range(k - 1):
        chosen.append(int(rng.choice(len(points), p=nearest / nearest.sum())))
        nearest = np.minimum(nearest, ((points - points[chosen[-1]]) ** 2).sum(axis=1))
    return points[chosen]


def _kmeans(points: np.ndarray, centroids: np.ndarray) -> tuple[float, np.ndarray]:
    """Lloyd's iterations from `centroids` until no point changes cluster (at most ITERATIONS);
    an emptied cluster keeps its centroid. (inertia, centroids)."""
    labels, norms = np.full(len(points), -1), (points ** 2).sum(axis=1)
    for _ in range(ITERATIONS):
        nearest = _distances(points, centroids, norms).argmin(axis=1)
        if (nearest == labels).all():
            break
        labels = nearest
        onehot = np.eye(len(centroids))[labels]
        counts = onehot.sum(axis=0)
        sums = onehot.T @ points
        centroids = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None],
                             centroids)
    return float(_distances(points, centroids, norms).min(axis=1).sum()), centroids


def _distances(points: np.ndarray, centroids: np.ndarray,
               norms: np.ndarray | None = None) -> np.ndarray:
    """Squared distance of every point (rows) to every centroid (columns); `norms`: the
    points' squared norms, when known."""
    norms = (points ** 2).sum(axis=1) if norms is None else norms
    squared = (norms[:, None] - 2 * points @ centroids.T
               + (centroids ** 2).sum(axis=1)[None, :])
    return np.maximum(squared, 0.0)


def _members(points: np.ndarray, centroids: np.ndarray) -> list[list[int]]:
    distances = _distances(points, centroids)
    labels = distances.argmin(axis=1)
    groups = []
    for c in range(len(centroids)):
        members = np.flatnonzero(labels == c)
        if len(members):  # a stable sort keeps input order among equal distances
            groups.append(members[np.argsort(distances[members, c], kind="stable")].tolist())
    return sorted(groups, key=min)

"""Chameleon's adaptive sampling (simpletvm.sampling) and how the search stage pools and picks
candidates for it: pure numpy, no TVM run."""

from __future__ import annotations

import numpy as np
import pytest

from simpletvm import sampling
from simpletvm.stages.search import MAX_ATTEMPTS, _clustered, candidate_pool
from tests.simpletvm.test_units import _Search


def _blobs(count: int, size: int = 9, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`count` well-separated blobs of `size` points, shuffled; (points, blob of each). Blob b
    stands out in feature b, so every feature separates (standardized, a feature that does
    not is noise as loud as one that does)."""
    rng = np.random.default_rng(seed)
    centers = 20.0 * np.eye(count) + rng.normal(0.0, 1.0, (count, count))
    points = np.concatenate([c + rng.normal(0.0, 0.2, (size, count)) for c in centers])
    blob = np.repeat(np.arange(count), size)
    order = rng.permutation(len(points))
    return points[order], blob[order]


@pytest.mark.parametrize("count", [2, 3, 5, 7, 11])
def test_well_separated_blobs_give_one_cluster_and_one_representative_each(count: int) -> None:
    points, blob = _blobs(count)
    groups = sampling.clusters(points, batch=16, seed=1, min_k=2)
    assert sorted(sorted(blob[g].tolist()) for g in groups) == [[b] * 9 for b in range(count)]
    chosen = sampling.choose(points, batch=16, seed=1, min_k=2)
    assert sorted(blob[chosen].tolist()) == list(range(count))
    assert chosen == sorted(chosen)  # in the order proposed (the cost model's ranking)


def test_a_batch_smaller_than_the_blobs_caps_the_clusters() -> None:
    points, blob = _blobs(6)
    chosen = sampling.choose(points, batch=3, seed=0, min_k=2)
    assert 1 <= len(chosen) <= 3 and len(set(blob[chosen].tolist())) == len(chosen)
    assert sampling.choose(points, batch=1, seed=0) == [sampling.clusters(points, 1, 0)[0][0]]


def test_fewer_candidates_than_min_k_are_all_measured() -> None:
    points = np.array([[0.0, 1.0], [5.0, 1.0], [9.0, 3.0]])
    assert sampling.choose(points, batch=8, seed=0, min_k=4) == [0, 1, 2]
    # identical candidates are one: k is capped by the distinct ones, the earliest represents
    twins = np.array([[1.0, 2.0], [1.0, 2.0], [3.0, 0.0]])
    assert sampling.choose(twins, batch=8, seed=0, min_k=4) == [0, 2]
    assert sampling.choose(np.zeros((0, 4)), batch=8, seed=0) == []
    assert sampling.choose(np.ones((5, 3)), batch=8, seed=0) == [0]


def test_k_lies_between_min_k_and_the_batch_even_without_clusters() -> None:
    points = np.random.default_rng(3).uniform(size=(60, 5))
    for min_k, batch in ((4, 12), (6, 6), (2, 30)):
        groups = sampling.clusters(points, batch=batch, seed=0, min_k=min_k)
        assert min_k <= len(groups) <= batch
        assert sorted(i for g in groups for i in g) == list(range(60))  # a partition


def test_the_choice_is_the_same_under_one_seed() -> None:
    points = np.random.default_rng(4).normal(size=(80, 12))
    first = sampling.clusters(points, batch=10, seed=7)
    assert sampling.clusters(points, batch=10, seed=7) == first
    assert sampling.choose(points, batch=10, seed=7) == sampling.representatives(first)


def test_a_representative_is_the_member_nearest_its_centroid() -> None:
    """Each blob is its center plus symmetric offsets, the center listed last: its mean is the
    center (standardizing, an affine map per column, keeps it so), so the center represents it;
    of two copies of the center, the earlier."""
    centers = np.array([[0.0, 0.0, 0.0], [30.0, -30.0, 5.0], [-40.0, 10.0, 60.0]])
    offsets = np.array([[1.0, 0, 0], [-1.0, 0, 0], [0, 2.0, 0], [0, -2.0, 0], [0, 0, 0.5],
                        [0, 0, -0.5]])
    rows, centre_rows = [], []
    for c in centers:
        rows.extend(c + offsets)
        centre_rows.append(len(rows))
        rows.append(c)
    rows.append(centers[2])  # a later copy of the last center: the earlier one wins the tie
    points = np.array(rows)
    assert sampling.choose(points, batch=8, seed=0, min_k=2) == centre_rows
    for group in sampling.clusters(points, batch=8, seed=0, min_k=2):
        assert group[0] in centre_rows  # nearest first


def test_a_representative_that_cannot_be_measured_gives_way_to_the_next_nearest() -> None:
    groups = [[4, 0, 2], [1, 3], [5]]
    assert sampling.representatives(groups) == [1, 4, 5]
    usable = [True, False, True, False, False, True]  # 4 measured before, 1 and 3 too
    assert sampling.representatives(groups, usable) == [0, 5]  # 4 -> 0; [1, 3]: none


def test_the_knee_is_where_the_inertia_stops_falling_fast() -> None:
    ks = [1, 2, 3, 4, 5, 6, 7, 8]
    inertia = [100.0, 52.0, 11.0, 9.0, 8.0, 7.0, 6.5, 6.0]
    assert ks[sampling.knee(ks, inertia)] == 3
    assert ks[sampling.knee(ks, inertia, low=5)] == 5  # not below the least k allowed
    assert sampling.knee([1, 4], [10.0, 10.0], low=4) == 1  # flat: the least k allowed
    assert sampling.knee([1, 2, 3], [100.0, 10.0, 1.0]) == 0  # straight (in log): the earliest


def test_a_candidate_is_the_mean_then_the_max_of_its_stores() -> None:
    rows = sampling.vectors([np.array([[1.0, 4.0], [3.0, 0.0]]), np.zeros((0, 2)),
                             np.array([[2.0, 2.0]])])
    assert rows.tolist() == [[2.0, 2.0, 3.0, 4.0], [0.0] * 4, [2.0, 2.0, 2.0, 2.0]]


class _Tensor:
    def __init__(self, matrix: list[list[float]]) -> None:
        self.matrix = np.array(matrix)

    def numpy(self) -> np.ndarray:
        return self.matrix


def test_the_stage_picks_new_finite_candidates_one_per_cluster() -> None:
    """Two clear clusters: the first's nearest (a measured one) gives way to its next; the
    second's nearest has no finite features and is passed over."""
    features = [_Tensor([[0.0, 0.0]]), _Tensor([[0.1, 0.0]]), _Tensor([[0.3, 0.1]]),
                _Tensor([[9.0, 9.0]]), _Tensor([[np.inf, 9.0]]), _Tensor([[9.2, 9.1]])]
    new = [False, True, True, True, True, True]
    chosen, clusters = _clustered(features, new, batch=2, seed=0)
    assert clusters == 2 and chosen[0] in (1, 2) and chosen[1] in (3, 5) and len(chosen) == 2
    assert _clustered([], [], batch=4, seed=0) == ([], 0)


def test_the_pool_keeps_measured_proposals_and_at_most_limit_new_ones() -> None:
    search = _Search(["a", "x", "b", "y", "x", "z", "w"])
    pool, new, asked = candidate_pool(search.propose, search.mark, lambda h: h, {"a", "b"},
                                      enough=2, limit=3)
    assert pool == ["a", "x", "b", "y", "z"] and new == [False, True, False, True, True]
    assert asked == 1 and search.marked == []


def test_the_pool_asks_again_while_too_few_are_new() -> None:
    search = _Search(["a", "b"], ["a", "c"], ["d", "e"])
    pool, new, asked = candidate_pool(search.propose, search.mark, lambda h: h, {"a", "b"},
                                      enough=2, limit=8)
    assert pool == ["a", "b", "c", "d", "e"] and sum(new) == 3
    assert asked == 3 and search.marked == [["a", "b"], ["a", "c"]]
    stuck = _Search(*[["a"]] * 10)
    pool, new, asked = candidate_pool(stuck.propose, stuck.mark, lambda h: h, {"a"}, 1, 8)
    assert pool == ["a"] and new == [False] and asked == MAX_ATTEMPTS

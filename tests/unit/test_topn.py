"""The blocked top-N kernel against a brute-force full sort (numpy only, no Spark)."""

from __future__ import annotations

import numpy as np
import pytest

from shoprec.als.topn import block_size, top_n_block


def brute_force(users, items, n, exclude=None):
    scores = users @ items.T
    out = []
    for row in range(scores.shape[0]):
        banned = set() if exclude is None or exclude[row] is None else set(exclude[row].tolist())
        ranked = sorted((i for i in range(scores.shape[1]) if i not in banned), key=lambda i: (-scores[row, i], i))
        out.append(ranked[:n])
    return out


def test_top_n_matches_a_full_sort():
    rng = np.random.default_rng(7)
    users = rng.normal(size=(50, 8)).astype(np.float32)
    items = rng.normal(size=(300, 8)).astype(np.float32)
    top, scores = top_n_block(users, items, 10)
    assert top.shape == (50, 10)
    assert [list(r) for r in top] == brute_force(users, items, 10)
    # scores are the dot products of the chosen items, best first
    expected = np.take_along_axis(users @ items.T, top, axis=1)
    np.testing.assert_allclose(scores, expected, rtol=1e-6)
    assert np.all(np.diff(scores, axis=1) <= 0)


def test_excluded_items_never_appear_and_the_rest_move_up():
    rng = np.random.default_rng(3)
    users = rng.normal(size=(4, 5)).astype(np.float32)
    items = rng.normal(size=(30, 5)).astype(np.float32)
    plain, _ = top_n_block(users, items, 5)
    exclude = [plain[0, :2], None, np.array([], dtype=np.int64), np.arange(30)]
    top, _ = top_n_block(users, items, 5, exclude)
    assert list(top[0]) == brute_force(users, items, 5, exclude)[0]
    assert not set(plain[0, :2]) & set(top[0])
    assert list(top[1]) == list(plain[1])
    assert list(top[2]) == list(plain[2])
    assert list(top[3]) == [-1] * 5  # everything excluded: nothing to recommend


def test_n_larger_than_the_catalog_returns_every_item_sorted():
    users = np.array([[1.0, 0.0]], dtype=np.float32)
    items = np.array([[0.1, 0.0], [0.3, 1.0], [0.2, 5.0]], dtype=np.float32)
    top, scores = top_n_block(users, items, 10)
    assert list(top[0]) == [1, 2, 0]
    np.testing.assert_allclose(scores[0], [0.3, 0.2, 0.1], rtol=1e-6)


def test_ties_break_by_item_position():
    users = np.ones((1, 2), dtype=np.float32)
    items = np.ones((6, 2), dtype=np.float32)
    top, _ = top_n_block(users, items, 3)
    assert list(top[0]) == [0, 1, 2]


@pytest.mark.parametrize(
    ("n_items", "block_mb", "asked", "expected"),
    [(20_000, 64, None, 838), (1_000, 64, None, 8192), (5, 64, 100, 100), (10**9, 1, None, 1)],
)
def test_block_size_keeps_one_score_block_under_the_budget(n_items, block_mb, asked, expected):
    assert block_size(n_items, block_mb, asked) == expected


def test_threshold_path_for_large_catalogs_matches_a_full_sort():
    # >= CHUNK * n items: the chunk-maximum threshold path, with exclusions, ties and a
    # catalog that is not a multiple of the chunk size.
    rng = np.random.default_rng(11)
    users = rng.normal(size=(40, 6)).astype(np.float32)
    items = rng.normal(size=(1003, 6)).astype(np.float32)
    items[500:510] = items[3]  # ten exact copies of one item: ties broken by position
    users[7] = 0.0  # every score 0: the first n positions
    exclude = [None] * 40
    exclude[1] = np.arange(0, 1003, 2)
    exclude[2] = np.arange(1003)  # everything excluded
    top, _scores = top_n_block(users, items, 10, exclude)
    want = brute_force(users, items, 10, exclude)
    for row in range(40):
        if row == 2:
            assert list(top[row]) == [-1] * 10
        else:
            assert list(top[row]) == want[row], row
    assert list(top[7]) == list(range(10))


def test_reused_buffers_give_the_same_lists_for_blocks_of_any_size():
    from shoprec.als.topn import Buffers

    rng = np.random.default_rng(5)
    items = rng.normal(size=(700, 4)).astype(np.float32)
    buffers = Buffers()
    for rows in (30, 7, 30, 1):  # shrinking and growing blocks through the same buffers
        users = rng.normal(size=(rows, 4)).astype(np.float32)
        top, _ = top_n_block(users, items, 5, buffers=buffers)
        assert [list(r) for r in top] == brute_force(users, items, 5)

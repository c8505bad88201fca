import numpy as np
import pytest
import torch

from sampling_matters.evaluation.metrics import (
    map_at_r,
    precision_at_1,
    r_precision,
    recall_at_k,
    relevant_counts,
    retrieval_scores,
)

KS = (1, 2, 4, 8)


def loop_scores(table, queries, relevant, ks=KS):
    """Every metric by plain Python loops over queries and ranks."""
    recalls = {k: [] for k in ks}
    precisions, average_precisions = [], []
    for row, label, r in zip(table.tolist(), queries.tolist(), relevant.tolist()):
        if r == 0:
            continue
        hits = [neighbour == label for neighbour in row]
        for k in ks:
            recalls[k].append(any(hits[:k]))
        precisions.append(sum(hits[:r]) / r)
        average_precisions.append(
            sum(sum(hits[: i + 1]) / (i + 1) for i in range(r) if hits[i]) / r
        )
    scores = {f"recall@{k}": float(np.mean(v)) for k, v in recalls.items()}
    scores.update(r_precision=float(np.mean(precisions)))
    scores["map@r"] = float(np.mean(average_precisions))
    scores.update(n_queries=len(precisions), n_excluded=len(queries) - len(precisions))
    return scores


def neighbour_table(embeddings, labels, k):
    """Labels of each point's k nearest other points (self excluded)."""
    distances = torch.cdist(embeddings, embeddings)
    distances.fill_diagonal_(float("inf"))
    return labels[distances.argsort(1)[:, :k]]


def random_case(seed, n=80, dim=4):
    g = torch.Generator().manual_seed(seed)
    labels = torch.cat([torch.randint(0, 12, (n - 3,), generator=g), torch.tensor([20, 21, 22])])
    embeddings = torch.randn(n, dim, generator=g) + labels[:, None].double().remainder(3)
    relevant = relevant_counts(labels)
    width = max(max(KS), int(relevant.max()))
    return neighbour_table(embeddings, labels, width), labels, relevant


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("as_numpy", [False, True])
def test_against_loop(seed, as_numpy):
    table, labels, relevant = random_case(seed)
    expected = loop_scores(table, labels, relevant)
    if as_numpy:
        table, labels, relevant = table.numpy(), labels.numpy(), relevant.numpy()
    assert retrieval_scores(table, labels, relevant) == pytest.approx(expected, abs=1e-12)
    recalls = recall_at_k(table, labels, KS, relevant=relevant)
    assert recalls == pytest.approx({k: expected[f"recall@{k}"] for k in KS}, abs=1e-12)
    assert precision_at_1(table, labels, relevant=relevant) == pytest.approx(expected["recall@1"])
    assert r_precision(table, labels, relevant) == pytest.approx(expected["r_precision"])
    assert map_at_r(table, labels, relevant) == pytest.approx(expected["map@r"])
    assert expected["n_excluded"] == 3


def test_relevant_counts_against_loop():
    g = torch.Generator().manual_seed(0)
    queries = torch.randint(0, 9, (50,), generator=g)
    gallery = torch.randint(3, 12, (70,), generator=g)
    assert relevant_counts(queries, gallery).tolist() == [
        int((gallery == q).sum()) for q in queries
    ]
    assert relevant_counts(queries).tolist() == [int((queries == q).sum()) - 1 for q in queries]
    assert relevant_counts(np.array([3, 3, 5]), np.array([], dtype=np.int64)).tolist() == [0, 0, 0]


def test_perfect_embedding_scores_one():
    labels = torch.arange(40) // 5  # 8 classes of 5
    embeddings = torch.nn.functional.one_hot(labels).double() + 1e-3 * torch.randn(40, 8).double()
    table = neighbour_table(embeddings, labels, 8)
    scores = retrieval_scores(table, labels, relevant_counts(labels))
    assert all(scores[key] == 1.0 for key in ("recall@1", "recall@8", "map@r", "r_precision"))


def test_all_wrong_scores_zero():
    labels = torch.arange(30) // 3
    table = (labels[:, None] + 1 + torch.arange(4)).remainder(10)  # never the query's label
    scores = retrieval_scores(table, labels, relevant_counts(labels), ks=[1, 4])
    assert all(scores[key] == 0.0 for key in ("recall@1", "recall@4", "map@r", "r_precision"))


def test_random_ranking_scores_chance():
    n, size = 1000, 10
    labels = torch.arange(n) // size
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(n, n, generator=g)
    noise.fill_diagonal_(2.0)  # self last, never kept
    table = labels[noise.argsort(1)[:, :size]]
    scores = retrieval_scores(table, labels, relevant_counts(labels), ks=[1, 4])
    chance = (size - 1) / (n - 1)  # P(a given neighbour shares the class)
    sigma = (chance * (1 - chance) / n) ** 0.5
    assert abs(scores["recall@1"] - chance) < 4 * sigma
    assert abs(scores["r_precision"] - chance) < 4 * sigma / 3  # mean of 9 ranks per query
    miss_four = np.prod([(n - size - i) / (n - 1 - i) for i in range(4)])
    assert abs(scores["recall@4"] - (1 - miss_four)) < 4 * (1 - miss_four) ** 0.5 / n**0.5


def test_single_image_classes_excluded():
    labels = torch.tensor([0, 0, 1, 2])  # classes 1 and 2 hold one image each
    table = torch.tensor([[0, 1], [0, 2], [0, 0], [0, 0]])
    relevant = relevant_counts(labels)
    assert relevant.tolist() == [1, 1, 0, 0]
    assert recall_at_k(table, labels, [1], relevant=relevant) == {1: 1.0}
    assert recall_at_k(table, labels, [1]) == {1: 0.5}  # no counts: every query scored
    scores = retrieval_scores(table, labels, relevant, ks=[1])
    assert (scores["n_queries"], scores["n_excluded"]) == (2, 2)
    with pytest.raises(ValueError, match="no query has a relevant"):
        map_at_r(table[2:], labels[2:], relevant[2:])


def test_table_width_checked():
    labels = torch.tensor([0, 0, 0, 0, 1, 1])
    table = torch.zeros(6, 2, dtype=torch.long)
    relevant = relevant_counts(labels)  # class 0 needs 3 columns
    with pytest.raises(ValueError, match="at least 3 columns"):
        r_precision(table, labels, relevant)
    with pytest.raises(ValueError, match="at least 3 columns"):
        map_at_r(table, labels, relevant)
    with pytest.raises(ValueError, match="at least 3 columns"):
        recall_at_k(table, labels, [3])
    # only the scored queries' R counts: with class 0 excluded, 2 columns suffice
    assert r_precision(table[4:], labels[4:], torch.tensor([1, 1])) == 0.0


@pytest.mark.parametrize(
    ("table", "labels", "relevant", "ks", "match"),
    [
        (torch.zeros(3, dtype=torch.long), torch.zeros(3), None, [1], r"shape \(Q, k\)"),
        (torch.zeros(0, 2, dtype=torch.long), torch.zeros(0), None, [1], r"shape \(Q, k\)"),
        (torch.zeros(3, 0, dtype=torch.long), torch.zeros(3), None, [1], r"shape \(Q, k\)"),
        (torch.zeros(3, 2, dtype=torch.long), torch.zeros(4), None, [1], "4 entries"),
        (torch.zeros(3, 2, dtype=torch.long), torch.zeros(3, 1), None, [1], r"shape \(Q,\)"),
        (torch.zeros(3, 2, dtype=torch.long), torch.zeros(3), None, [], "ks is empty"),
        (torch.zeros(3, 2, dtype=torch.long), torch.zeros(3), None, [0], "K = 0"),
        (
            torch.zeros(3, 2, dtype=torch.long),
            torch.zeros(3),
            torch.tensor([1, -1, 1]),
            [1],
            "non-neg",
        ),
        (torch.zeros(3, 2, dtype=torch.long), torch.zeros(3), torch.ones(3), [1], "integer"),
        (torch.zeros(3, 2, dtype=torch.long), torch.zeros(3), torch.ones(2).long(), [1], "3 non"),
    ],
)
def test_bad_inputs(table, labels, relevant, ks, match):
    with pytest.raises(ValueError, match=match):
        recall_at_k(table, labels, ks, relevant=relevant)


def test_relevant_counts_rejects_empty_and_2d():
    with pytest.raises(ValueError, match="empty"):
        relevant_counts(torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="shape"):
        relevant_counts(torch.zeros(2, 2, dtype=torch.long))

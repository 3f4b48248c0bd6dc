"""Tests of selector.eval.retrain: linear probe and kNN on frozen embeddings."""
import numpy as np
import pytest
from selector.eval.retrain import RETRAINERS, get_retrainer, knn_classifier, knn_vote, linear_probe


def blobs(n_per_class, centers, noise, rng):
    centers = np.asarray(centers, dtype=np.float64)
    x = np.concatenate([c + noise * rng.standard_normal((n_per_class, centers.shape[1])) for c in centers])
    y = np.repeat(np.arange(len(centers)), n_per_class)
    return x.astype(np.float32), y


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    centers = 3 * np.eye(8)[:4]
    xtr, ytr = blobs(5, centers, 0.3, rng)
    xte, yte = blobs(50, centers, 0.3, rng)
    return xtr, ytr, xte, yte


@pytest.mark.parametrize("name", ["linear", "knn"])
def test_retrainers_learn_separable_blobs(data, name):
    xtr, ytr, xte, yte = data
    pred = RETRAINERS[name](xtr, ytr, xte)
    assert pred.shape == yte.shape and pred.dtype == np.int64
    assert np.mean(pred == yte) > 0.95
    np.testing.assert_array_equal(pred, RETRAINERS[name](xtr, ytr, xte))   # deterministic


@pytest.mark.parametrize("name", ["linear", "knn"])
def test_one_chosen_class_predicts_that_class(data, name):
    xtr, _, xte, _ = data
    pred = RETRAINERS[name](xtr[:3], np.array([7, 7, 7]), xte)
    assert (pred == 7).all() and pred.shape == (xte.shape[0],)


@pytest.mark.parametrize("name", ["linear", "knn"])
def test_labels_are_kept_as_given(data, name):
    xtr, ytr, xte, yte = data
    mapping = np.array([3, 11, 40, 41])
    pred = RETRAINERS[name](xtr, mapping[ytr], xte)
    assert set(np.unique(pred)) <= set(mapping.tolist())
    assert np.mean(pred == mapping[yte]) > 0.95


def test_knn_vote_by_hand():
    classes = np.array([1, 2, 5])
    assert knn_vote(np.array([[1, 2, 2]]), classes).tolist() == [2]            # majority
    assert knn_vote(np.array([[5, 1, 1, 5]]), classes).tolist() == [5]         # tie -> nearest first
    assert knn_vote(np.array([[1, 2, 2]]), classes, np.array([[1.0, 0.3, 0.3]])).tolist() == [1]
    assert knn_vote(np.array([[1, 2, 2]]), classes, np.array([[1.0, 0.6, 0.6]])).tolist() == [2]
    assert knn_vote(np.array([[2, 5], [5, 5]]), classes).tolist() == [2, 5]


def test_knn_k1_is_the_nearest_neighbour_rule():
    rng = np.random.default_rng(1)
    xtr = rng.standard_normal((30, 5)).astype(np.float32)
    ytr = rng.integers(0, 4, 30)
    xte = rng.standard_normal((40, 5)).astype(np.float32)
    pred = knn_classifier(xtr, ytr, xte, k=1)
    for i in range(xte.shape[0]):   # cosine similarity, written out
        sims = [float(np.dot(xte[i], xtr[j]) / np.linalg.norm(xte[i]) / np.linalg.norm(xtr[j]))
                for j in range(xtr.shape[0])]
        assert pred[i] == ytr[int(np.argmax(sims))]


def test_knn_majority_with_fewer_labels_than_k():
    # k = min(20, n_labeled): with 3 labels of class 0 and 2 of class 1 and a plain majority,
    # every test item is class 0.
    rng = np.random.default_rng(2)
    xtr = rng.standard_normal((5, 3)).astype(np.float32)
    pred = knn_classifier(xtr, np.array([0, 0, 0, 1, 1]), rng.standard_normal((9, 3)), temperature=None)
    assert (pred == 0).all()


def test_linear_probe_matches_plain_sklearn_on_scaled_features(data):
    from sklearn.linear_model import LogisticRegression

    xtr, ytr, xte, _ = data
    mu = xtr.astype(np.float64).mean(0)
    s = np.sqrt(np.mean((xtr - mu) ** 2))
    ref = LogisticRegression(C=0.5, max_iter=2000).fit((xtr - mu) / s, ytr).predict((xte - mu) / s)
    np.testing.assert_array_equal(linear_probe(xtr, ytr, xte, C=0.5), ref)


def test_bad_input_and_registry():
    with pytest.raises(ValueError, match="train_emb"):
        linear_probe(np.zeros((3, 2)), [0, 1, 0], np.zeros((2, 3)))
    with pytest.raises(ValueError, match="one label per row"):
        knn_classifier(np.zeros((3, 2)), [0, 1], np.zeros((2, 2)))
    with pytest.raises(ValueError, match="unknown retrainer"):
        get_retrainer("finetune-nope")
    assert get_retrainer("knn") is knn_classifier


def test_loo_knn_matches_a_slow_reference_and_never_votes_for_itself():
    from selector.eval.retrain import loo_knn_predict

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 5))
    y = rng.integers(0, 3, 40)
    pred = loo_knn_predict(x, y, k=5, temperature=None)
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    for i in range(40):
        sims = u @ u[i]
        sims[i] = -np.inf  # leave the row itself out
        nn = np.argsort(-sims, kind="stable")[:5]
        votes = np.bincount(y[nn], minlength=3)
        best = np.flatnonzero(votes == votes.max())
        # ties go to the tied class whose member ranks first
        expect = best[0] if len(best) == 1 else next(c for c in y[nn] if c in best)
        assert pred[i] == expect
    # Two exact duplicates with different labels elsewhere: each is voted by the other, not by itself.
    z = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    assert loo_knn_predict(z, np.array([0, 0, 1, 1]), k=1).tolist() == [0, 0, 1, 1]
    assert loo_knn_predict(z, np.array([0, 1, 1, 0]), k=1).tolist() == [1, 0, 0, 1]

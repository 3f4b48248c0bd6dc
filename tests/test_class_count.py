"""Estimating the number of classes (eigengap of a kNN graph) and spectral grouping."""
import numpy as np
import pytest

from selector.strategies.class_count import (affinity_graph, eigengap_k, estimate_num_classes, laplacian_spectrum,
                                    spectral_groups)

from .blobs import geometric_sizes, sphere_blobs


def unequal_blobs(k, n=3000, d=32, ratio=10.0, spread=0.04, seed=0):
    """k Gaussian blobs on the unit sphere, sizes decaying geometrically by ``ratio``."""
    return sphere_blobs(geometric_sizes(k, n, ratio), d, spread, seed)


@pytest.mark.parametrize("k", [2, 5, 10, 20])
def test_estimate_on_unequal_blobs(k):
    x, _ = unequal_blobs(k, seed=k)
    est = estimate_num_classes(x, n_sample=2000, seed=0)
    assert est.k == k
    assert est.eigenvalues.shape == (31,)
    assert (np.diff(est.eigenvalues) >= -1e-6).all()


def test_eigengap_k_hand_case():
    ev = np.array([0.0, 0.0, 0.01, 0.5, 0.55, 0.6])
    assert eigengap_k(ev) == 3
    assert eigengap_k(ev, k_max=2) == 2
    assert eigengap_k(np.array([0.0, 0.1, 0.2, 0.9])) == 3
    # never fewer groups than components; more components than k_max -> k_max
    assert eigengap_k(np.array([0.0, 0.0, 0.0, 0.5, 0.6, 0.7])) == 3
    assert eigengap_k(np.array([0.0, 0.0, 0.0, 0.0, 0.9]), k_max=2) == 2


def test_laplacian_spectrum_counts_components():
    # three disconnected cliques -> eigenvalue 0 with multiplicity 3
    import scipy.sparse as sp
    blocks = [np.ones((s, s)) - np.eye(s) for s in (4, 6, 5)]
    W = sp.csr_matrix(sp.block_diag(blocks))
    vals, vecs = laplacian_spectrum(W, 5)
    np.testing.assert_allclose(vals[:3], 0, atol=1e-8)
    assert vals[3] > 0.5
    assert vecs.shape == (15, 5)


def test_affinity_graph_symmetric_sparse():
    x, _ = unequal_blobs(3, n=300)
    W = affinity_graph(x, k=5)
    assert W.shape == (len(x), len(x))
    assert abs(W - W.T).max() < 1e-12
    assert W.diagonal().max() == 0
    assert W.nnz <= 2 * 5 * len(x)


def test_spectral_groups_recover_unequal_blobs():
    x, y = unequal_blobs(6, n=3000, ratio=30, seed=1)
    means, assign = spectral_groups(x, 6, seed=0, n_sample=2000)
    assert means.shape[0] == 6
    # every group is one blob and every blob one group
    for g in range(6):
        assert np.unique(y[assign == g]).shape[0] == 1
    assert np.unique(assign).shape[0] == 6


def test_tiny_pool():
    x = np.eye(3, dtype=np.float32)
    assert estimate_num_classes(x).k == 1

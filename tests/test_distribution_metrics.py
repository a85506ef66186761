"""FVD, KVD and IS formulas against independent float64 computations on fixed arrays."""

import math

import numpy as np
import pytest

from storyreel.core.errors import UserError
from storyreel.generation.distribution_metrics import frechet_distance, inception_score, kernel_distance


def features(seed: int, n: int = 40, d: int = 6, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + shift


def frechet_by_eigenvalues(a, b) -> float:
    """tr(Σa) + tr(Σb) − 2 tr((Σa^½ Σb Σa^½)^½) + ‖μa − μb‖², with symmetric square roots from eigh."""
    def sqrt_psd(m):
        values, vectors = np.linalg.eigh(m)
        return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T

    cov_a = sum(np.outer(x - a.mean(0), x - a.mean(0)) for x in a) / (len(a) - 1)
    cov_b = sum(np.outer(x - b.mean(0), x - b.mean(0)) for x in b) / (len(b) - 1)
    root_a = sqrt_psd(cov_a)
    cross = np.trace(sqrt_psd(root_a @ cov_b @ root_a))
    return float(np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)


def test_frechet_distance_matches_the_eigenvalue_formula():
    a, b = features(0), features(1, n=50, shift=0.7)
    assert frechet_distance(a, b) == pytest.approx(frechet_by_eigenvalues(a, b), rel=1e-6)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)


def test_kernel_distance_is_the_unbiased_polynomial_mmd_written_out_pair_by_pair():
    a, b = features(2, n=12), features(3, n=12, shift=0.5)
    d, n = a.shape[1], len(a)

    def k(x, y):
        return (sum(xi * yi for xi, yi in zip(x, y)) / d + 1) ** 3

    def mmd2(x, y):  # every subset of 12 rows of two 12-row sets is the whole set, in some order
        xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
        yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
        return xx + yy - 2 * sum(k(x[i], y[j]) for i in range(n) for j in range(n)) / (n * n)

    assert kernel_distance(a, b, subsets=3) == pytest.approx(mmd2(a, b), rel=1e-6)
    assert mmd2(a, b) > 0.01  # the shifted set is measurably apart


def test_inception_score_matches_the_kl_formula_per_split():
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(30, 5)) * 2
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    p[0] = [1, 0, 0, 0, 0]  # a one-hot row: 0·log 0 counts as 0
    expected = []
    for part in (p[:10], p[10:20], p[20:]):
        marginal = [sum(row[c] for row in part) / len(part) for c in range(5)]
        kl = [sum(row[c] * math.log(row[c] / marginal[c]) for c in range(5) if row[c] > 0) for row in part]
        expected.append(math.exp(sum(kl) / len(kl)))
    mean, spread = inception_score(p, splits=3)
    assert mean == pytest.approx(np.mean(expected), rel=1e-6) and spread == pytest.approx(np.std(expected), rel=1e-6)
    assert inception_score(np.full((10, 4), 0.25), splits=2) == pytest.approx((1.0, 0.0))  # no information: 1


@pytest.mark.parametrize("call, message", [
    (lambda: frechet_distance(np.zeros((1, 3)), np.zeros((4, 3))), "features a must be a finite (N ≥ 2, D) array"),
    (lambda: kernel_distance(np.zeros((4, 3)), np.full((4, 3), np.nan)), "features b must be a finite"),
    (lambda: inception_score(np.ones((5, 3)), splits=10), "inception score needs non-negative class probabilities"),
])
def test_bad_inputs_name_what_is_wrong(call, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call()

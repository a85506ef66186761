"""Distribution metrics of the video-generation papers, computed from features or class probabilities.

* Fréchet distance (FVD when the features are I3D's): ‖μa − μb‖² + tr(Σa + Σb − 2(ΣaΣb)^½) between
  Gaussians fitted to two feature sets.
* Kernel distance (KVD with I3D features): the unbiased MMD² under the polynomial kernel
  k(x, y) = (x·y / d + 1)³, averaged over random subsets, as KID defines it and FVD's authors report KVD.
* Inception Score (IS with the C3D UCF-101 classifier TGAN and Reuse and Diffuse use):
  exp(E_x KL(p(y|x) ‖ p(y))), its mean and spread over `splits` equal parts.

Everything runs in float64 on arrays, so each formula is checked against an independent computation
(tests/test_distribution_metrics.py); the feature extractors are separate.
"""

from __future__ import annotations

import numpy as np

from storyreel.core.errors import UserError


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to features `a` (N, D) and `b` (M, D)."""
    from scipy.linalg import sqrtm

    a, b = _features(a, "a"), _features(b, "b")
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = sqrtm(cov_a @ cov_b)
    root = root.real if np.iscomplexobj(root) else root  # numerical noise on a singular product
    return float(((mean_a - mean_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


def kernel_distance(a: np.ndarray, b: np.ndarray, subsets: int = 100, subset_size: int = 1000,
                    seed: int = 0) -> float:
    """Mean unbiased polynomial-kernel MMD² over `subsets` random subsets of min(subset_size, N, M) rows each."""
    a, b = _features(a, "a"), _features(b, "b")
    size = min(subset_size, len(a), len(b))
    rng = np.random.default_rng(seed)
    return float(np.mean([_mmd2(a[rng.choice(len(a), size, replace=False)], b[rng.choice(len(b), size, replace=False)])
                          for _ in range(subsets)]))


def inception_score(probabilities: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """(mean, standard deviation) over `splits` parts of exp(E KL(p(y|x) ‖ p(y))); rows are p(y|x)."""
    from scipy.special import xlogy

    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or len(p) < splits or not np.all(np.isfinite(p)) or np.any(p < 0):
        raise UserError(f"inception score needs non-negative class probabilities (N ≥ {splits}, classes), "
                        f"got shape {p.shape}")
    scores = []
    for part in np.array_split(p, splits):
        marginal = part.mean(0, keepdims=True)
        kl = (xlogy(part, part) - xlogy(part, marginal)).sum(1)  # 0·log 0 = 0
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def _mmd2(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]
    k_xx, k_yy, k_xy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
    n = len(x)
    return float((k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (n * (n - 1)) - 2 * k_xy.mean())


def _features(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2 or not np.all(np.isfinite(x)):
        raise UserError(f"features {name} must be a finite (N ≥ 2, D) array, got shape {x.shape}")
    return x

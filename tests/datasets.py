"""Small, download-free datasets for the test model zoo.

Two datasets back the trained cases in `tests/cases.py`:

- `digits_split`: scikit-learn's bundled 8x8 handwritten digits (1797 images, shipped inside
  the scikit-learn wheel, so no network access is needed).
- `jet_split`: a deterministic *synthetic* stand-in for the hls4ml jet-tagging dataset, with
  the same shape (16 high-level features, 5 classes) but generated here, because the real
  data (OpenML `hls4ml_lhc_jets_hlf`) cannot be downloaded in CI.

Both return NumPy arrays so that tests, training scripts and benchmarks can share them without
importing torch.
"""

from __future__ import annotations

import functools

import numpy as np
from numpy.typing import NDArray

Split = tuple[NDArray[np.float32], NDArray[np.int64], NDArray[np.float32], NDArray[np.int64]]

JET_CLASSES: tuple[str, ...] = ("g", "q", "W", "Z", "t")
"""Jet classes in label order: gluon, light quark, W boson, Z boson, top quark."""

JET_FEATURES = 16
JET_TRAIN = 20000
JET_TEST = 5000


def _stratified_indices(
    labels: NDArray[np.int64], test_fraction: float, rng: np.random.Generator
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Split indices per class so both halves keep the class proportions."""
    train: list[NDArray[np.int64]] = []
    test: list[NDArray[np.int64]] = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = int(round(len(members) * test_fraction))
        test.append(members[:n_test])
        train.append(members[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


@functools.cache
def _load_digits() -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """All 1797 digits, loaded once (callers only ever get copies, by fancy indexing)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    return images, digits.target.astype(np.int64)


def digits_split(seed: int = 0) -> Split:
    """Return scikit-learn's 8x8 digits as a fixed, stratified 75/25 train/test split.

    Images are float32 `[N, 1, 8, 8]` scaled to [0, 1] (the raw pixels are 0..16), labels are
    int64 in 0..9. The same `seed` always gives the same split (1347 train, 450 test).
    """
    images, labels = _load_digits()
    train, test = _stratified_indices(labels, 0.25, np.random.default_rng(seed))
    return images[train], labels[train], images[test], labels[test]


def _random_covariance_factor(rng: np.random.Generator, dim: int, rank: int) -> NDArray[np.float64]:
    """A factor L with L @ L.T = low-rank correlations + diagonal noise (a valid covariance)."""
    loadings = rng.normal(0.0, 0.6, size=(dim, rank))
    noise = np.diag(rng.uniform(0.5, 1.0, size=dim))
    return np.asarray(np.linalg.cholesky(loadings @ loadings.T + noise @ noise), dtype=np.float64)


def _jet_class_components(
    rng: np.random.Generator, n_components: int, separation: float
) -> list[list[tuple[NDArray[np.float64], NDArray[np.float64]]]]:
    """Per class, a list of (mean, covariance factor) Gaussian mixture components.

    The classes share a common correlated "QCD-like" background direction and differ by
    offsets of size `separation`; g/q and W/Z are deliberately placed close to each other,
    as in real jet tagging where these are the hard pairs to tell apart.
    """
    shared = _random_covariance_factor(rng, JET_FEATURES, rank=4)
    centers = rng.normal(0.0, separation, size=(len(JET_CLASSES), JET_FEATURES))
    centers[1] = centers[0] + rng.normal(0.0, 0.45 * separation, size=JET_FEATURES)  # q near g
    centers[3] = centers[2] + rng.normal(0.0, 0.45 * separation, size=JET_FEATURES)  # Z near W
    classes = []
    for center in centers:
        components = []
        for _ in range(n_components):
            mean = center + rng.normal(0.0, 0.6 * separation, size=JET_FEATURES)
            factor = 0.5 * shared + 0.5 * _random_covariance_factor(rng, JET_FEATURES, rank=3)
            components.append((mean, factor))
        classes.append(components)
    return classes


def _sample_jets(
    rng: np.random.Generator,
    classes: list[list[tuple[NDArray[np.float64], NDArray[np.float64]]]],
    n: int,
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Draw `n` jets with balanced classes from the per-class Gaussian mixtures."""
    labels = np.arange(n, dtype=np.int64) % len(classes)
    rng.shuffle(labels)
    features = np.empty((n, JET_FEATURES))
    for label, components in enumerate(classes):
        rows = np.flatnonzero(labels == label)
        which = rng.integers(0, len(components), size=len(rows))
        for k, (mean, factor) in enumerate(components):
            picked = rows[which == k]
            gauss = rng.normal(size=(len(picked), JET_FEATURES))
            features[picked] = mean + gauss @ factor.T
    # Kinematic features (masses, momenta, multiplicities) are positive and skewed; make a few
    # features log-normal-like so the MLP sees non-Gaussian inputs, as with the real data.
    features[:, :4] = np.exp(0.5 * features[:, :4])
    return features, labels


def jet_split(seed: int = 0) -> Split:
    """Return a synthetic stand-in for the hls4ml jet-tagging data (20000 train, 5000 test).

    **This data is synthetic.** The real dataset (OpenML `hls4ml_lhc_jets_hlf`, 16 high-level
    jet features, 5 classes g/q/W/Z/t) needs a download that CI and this repository cannot
    make, so this function generates data of the same shape instead: each class is a mixture
    of two correlated Gaussians in 16 dimensions, with g/q and W/Z overlapping, and four
    skewed (exponentiated) features. It is tuned so that hls4ml's 16-64-32-32-5 MLP reaches
    roughly 80% test accuracy, like on the real data, rather than a trivial 100%. Accuracy
    numbers on it say nothing about physics; they only check that compiled models keep the
    float model's behaviour.

    Features are float32 `[N, 16]` standardized with the training split's mean and std;
    labels are int64 in 0..4 (see `JET_CLASSES`). The same `seed` always gives the same data.
    """
    rng = np.random.default_rng(seed)
    classes = _jet_class_components(rng, n_components=2, separation=0.55)
    features, labels = _sample_jets(rng, classes, JET_TRAIN + JET_TEST)
    x_train, x_test = features[:JET_TRAIN], features[JET_TRAIN:]
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    x_train = ((x_train - mean) / std).astype(np.float32)
    x_test = ((x_test - mean) / std).astype(np.float32)
    return x_train, labels[:JET_TRAIN], x_test, labels[JET_TRAIN:]

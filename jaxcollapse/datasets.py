"""Real data sets, from local files only: nothing here touches the network.

load_digits(seed)        scikit-learn's bundled 8x8 handwritten digits, scaled to [0, 1]
load_mnist_npz(path)     MNIST from a local ``mnist.npz`` (keys x_train, y_train, x_test, y_test)
load_text(tokenizer)     English text as int32 token blocks: the Python 3.11.7 documentation
                         that ships with jaxcollapse (jaxcollapse/data/), or your own text file

The image loaders return ``(train, heldout)`` float32 arrays [n, h, w] in [0, 1] (labels on request).
"""
from __future__ import annotations

import os

import numpy as np

from jaxcollapse import _checks
from jaxcollapse._text import CORPUS_SHA256, Text, corpus_text, load_text  # noqa: F401


def load_digits(seed: int = 0, heldout_fraction: float = 0.2, return_labels: bool = False):
    """The 1797 8x8 digits of ``sklearn.datasets.load_digits`` (bundled, no download), /16 to [0, 1].

    The train/held-out split is a permutation fixed by ``seed``.

    Examples:
        >>> train, heldout = load_digits(seed=0)
        >>> train.shape, heldout.shape, float(train.max())
        ((1438, 8, 8), (359, 8, 8), 1.0)
    """
    import sklearn.datasets  # lazy: only the digits dataset needs scikit-learn, a slow import for every other study

    _checks.number_in("heldout_fraction", heldout_fraction, 0.0, 1.0, low_open=True, high_open=True)
    bunch = sklearn.datasets.load_digits()
    images = (np.asarray(bunch.images, np.float32) / 16.0).astype(np.float32)  # pixel values 0..16
    labels = np.asarray(bunch.target, np.int32)
    order = np.random.default_rng(seed).permutation(len(images))
    n_heldout = int(round(heldout_fraction * len(images)))
    test_idx, train_idx = order[:n_heldout], order[n_heldout:]
    if return_labels:
        return images[train_idx], images[test_idx], labels[train_idx], labels[test_idx]
    return images[train_idx], images[test_idx]


def _to_unit_images(name: str, arr) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 3:
        raise ValueError(f"{name} must be an image array [n, h, w], got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.integer):
        if arr.min() < 0 or arr.max() > 255:
            raise ValueError(f"{name}: integer pixels must lie in 0..255, got {arr.min()}..{arr.max()}")
        return (arr.astype(np.float32) / 255.0).astype(np.float32)
    arr = _checks.finite_array(name, arr).astype(np.float32)
    if arr.min() < 0 or arr.max() > 1:
        raise ValueError(f"{name}: float pixels must lie in [0, 1], got {arr.min()}..{arr.max()}")
    return arr


def load_mnist_npz(path, return_labels: bool = False):
    """MNIST from a local ``mnist.npz`` (as saved by keras: x_train, y_train, x_test, y_test).

    uint8 pixels are scaled by /255; float pixels must already lie in [0, 1].

    Returns ``(train, heldout)`` float32 [n, 28, 28] (or ``(train, heldout, y_train, y_test)``).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"path {path!r} does not exist; jaxcollapse never downloads MNIST, "
                         "pass a local mnist.npz with keys x_train, y_train, x_test, y_test")
    with np.load(path, allow_pickle=False) as npz:
        missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in npz.files]
        if missing:
            raise ValueError(f"{path!r} lacks key(s) {missing}; expected x_train, y_train, x_test, y_test")
        train = _to_unit_images("x_train", npz["x_train"])
        test = _to_unit_images("x_test", npz["x_test"])
        y_train = np.asarray(npz["y_train"]).astype(np.int32)
        y_test = np.asarray(npz["y_test"]).astype(np.int32)
    if len(y_train) != len(train) or len(y_test) != len(test):
        raise ValueError(f"{path!r}: label counts {len(y_train)}, {len(y_test)} do not match "
                         f"image counts {len(train)}, {len(test)}")
    if return_labels:
        return train, test, y_train, y_test
    return train, test

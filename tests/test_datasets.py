"""Local data loaders: scikit-learn's bundled digits and a local mnist.npz; nothing downloads."""
import numpy as np
import pytest

from jaxcollapse.datasets import load_digits, load_mnist_npz


def test_load_digits_split_is_fixed_by_seed_and_covers_all():
    import sklearn.datasets

    train, heldout = load_digits(seed=0)
    assert train.shape == (1438, 8, 8) and heldout.shape == (359, 8, 8)
    assert train.dtype == np.float32 and train.min() == 0.0 and train.max() == 1.0
    again, _ = load_digits(seed=0)
    np.testing.assert_array_equal(train, again)
    other, _ = load_digits(seed=1)
    assert not np.array_equal(train, other)
    # the split is a partition of the bundled images, each /16
    everything = np.concatenate([train, heldout]).reshape(-1, 64) * 16
    reference = sklearn.datasets.load_digits().images.reshape(-1, 64)
    np.testing.assert_array_equal(np.unique(everything, axis=0), np.unique(reference, axis=0))
    tr, te, ytr, yte = load_digits(seed=0, return_labels=True)
    assert ytr.shape == (1438,) and set(np.unique(yte)) == set(range(10))


def _write_npz(path, x_train, x_test, **extra):
    arrays = dict(x_train=x_train, y_train=np.arange(len(x_train)) % 10,
                  x_test=x_test, y_test=np.arange(len(x_test)) % 10)
    arrays.update(extra)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})


def test_load_mnist_npz_scales_uint8(tmp_path):
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, (12, 28, 28), dtype=np.uint8)
    x_test = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    path = tmp_path / "mnist.npz"
    _write_npz(path, x_train, x_test)
    train, test = load_mnist_npz(path)
    assert train.shape == (12, 28, 28) and test.shape == (5, 28, 28) and train.dtype == np.float32
    np.testing.assert_allclose(train, x_train / 255.0, rtol=1e-6)
    *_, y_train, y_test = load_mnist_npz(str(path), return_labels=True)
    np.testing.assert_array_equal(y_test, np.arange(5) % 10)


def test_load_mnist_npz_bad_files(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_mnist_npz(tmp_path / "absent.npz")
    path = tmp_path / "nokeys.npz"
    np.savez(path, x_train=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="y_train"):
        load_mnist_npz(path)
    path = tmp_path / "flat.npz"
    _write_npz(path, np.zeros((2, 784), np.uint8), np.zeros((2, 784), np.uint8))
    with pytest.raises(ValueError, match="x_train"):
        load_mnist_npz(path)
    path = tmp_path / "range.npz"
    _write_npz(path, np.full((2, 28, 28), 3.0), np.zeros((2, 28, 28)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        load_mnist_npz(path)

"""Datasets, augmentation and the deterministic, resumable batch stream."""
import gzip
import tarfile

import numpy as np
import pytest
import torch

from distill.data import AUGMENTATIONS, DATASETS, ArrayBatches
from distill.data.augment import random_crop
from distill.errors import DataError
from tests.helpers import SHARED


def stream(seed=0, augment="crop_flip", n=50, batch=8):
    images = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(42))
    labels = torch.arange(n)
    return ArrayBatches(images, labels, batch_size=batch, mean=[0.5] * 3, std=[0.25] * 3, seed=seed,
                        augment=AUGMENTATIONS.get(augment).obj)


def test_stream_is_deterministic_and_resumable_at_any_batch():
    a, b = stream(), stream()
    full = list(a.epoch(3))
    assert len(full) == len(a) == 7
    tail = list(b.epoch(3, start=4))
    for x, y in zip(full[4:], tail):
        assert torch.equal(x["x"], y["x"]) and torch.equal(x["index"], y["index"])


def test_every_example_once_per_epoch_and_orders_differ():
    s = stream()
    e0 = torch.cat([b["index"] for b in s.epoch(0)])
    e1 = torch.cat([b["index"] for b in s.epoch(1)])
    assert sorted(e0.tolist()) == list(range(50)) and not torch.equal(e0, e1)
    assert not torch.equal(e0, torch.cat([b["index"] for b in stream(seed=1).epoch(0)]))


def test_labels_follow_their_images():
    s = stream(augment="none")
    for b in s.epoch(0):
        expected = (s.images[b["index"]].float() / 255 - 0.5) / 0.25
        torch.testing.assert_close(b["x"], expected)
        assert torch.equal(b["y"], b["index"])


def test_random_crop_is_a_shifted_window():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6)
    out = random_crop(x, 2, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):  # each crop equals some window of the padded image
        found = any(torch.equal(out[i], padded[i, :, r:r + 6, c:c + 6]) for r in range(5) for c in range(5))
        assert found


def test_digits_split_is_fixed_and_stratified():
    d = DATASETS.get("digits").obj()
    assert d.train_x.dtype == torch.uint8 and d.train_x.shape[1:] == (1, 8, 8)
    assert len(d.train_y) + len(d.test_y) == 1797
    assert torch.bincount(d.test_y).min() >= 30
    assert torch.equal(d.test_y, DATASETS.get("digits").obj().test_y)


def write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_idx_parser(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 20), ("t10k", 10)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, (n,)))
    d = DATASETS.get("fashion_mnist").obj(str(tmp_path))
    assert d.train_x.shape == (20, 1, 28, 28) and d.test_x.shape == (10, 1, 28, 28) and d.num_classes == 10


def test_missing_dataset_path_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        DATASETS.get("fashion_mnist").obj(str(tmp_path / "missing"))
    with pytest.raises(DataError, match="missing train-images"):
        DATASETS.get("fashion_mnist").obj(str(tmp_path))
    with pytest.raises(DataError, match="does not exist"):
        DATASETS.get("cifar10").obj(str(tmp_path / "nope.tar.xz"))


@pytest.mark.skipif(not (SHARED / "data" / "fashion-mnist").is_dir(), reason="../shared is absent")
def test_real_fashion_mnist():
    d = DATASETS.get("fashion_mnist").obj(str(SHARED / "data" / "fashion-mnist"))
    assert d.train_x.shape == (60000, 1, 28, 28) and d.test_x.shape == (10000, 1, 28, 28)
    assert torch.bincount(d.train_y).tolist() == [6000] * 10


def make_tree(root, size=6):
    from PIL import Image
    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("cat", "ant"):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i}.png")


def test_image_folder_from_folder_and_tar(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path / "cache"))
    make_tree(tmp_path / "tree")
    d = DATASETS.get("image_folder").obj(str(tmp_path / "tree"))
    assert d.classes == ["ant", "cat"] and d.train_x.shape == (6, 3, 6, 6) and d.test_x.shape == (4, 3, 6, 6)
    assert torch.bincount(d.train_y).tolist() == [3, 3]
    with tarfile.open(tmp_path / "tree.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "tree", arcname="top")
    t = DATASETS.get("image_folder").obj(str(tmp_path / "tree.tar.gz"))
    assert torch.equal(t.train_x, d.train_x) and torch.equal(t.test_y, d.test_y)
    assert list((tmp_path / "cache" / "datasets").glob("*.npz")), "decoded arrays are cached"
    again = DATASETS.get("image_folder").obj(str(tmp_path / "tree"))
    assert torch.equal(again.train_x, d.train_x)


def test_image_folder_resizes_on_request(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path / "cache"))
    make_tree(tmp_path / "tree")
    d = DATASETS.get("image_folder").obj(str(tmp_path / "tree"), image_size=4)
    assert d.train_x.shape[-2:] == (4, 4)


def test_subsets_are_random_nested_and_class_balanced_on_sorted_trees():
    from distill.data.subset import subset_indices
    labels = torch.arange(10).repeat_interleave(100)  # stored class by class, like an image tree
    small, large = subset_indices(1000, 100), subset_indices(1000, 400)
    assert set(small.tolist()) <= set(large.tolist()), "a smaller subset is part of a larger one"
    counts = torch.bincount(labels[small], minlength=10)
    assert (counts > 0).all() and counts.max() < 25, counts
    assert torch.equal(small, subset_indices(1000, 100))

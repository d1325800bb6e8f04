"""Dataset loaders on files the tests write in each format's exact layout, and seeded validation splits."""
from __future__ import annotations

import gzip
import io
import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import autoaug.datasets as datasets_module
from autoaug.dataset_formats import MissingDataError
from autoaug.datasets import ArrayData, Dataset, balanced_subset, list_datasets, load_dataset, split_train_val
from autoaug.errors import AutoaugError, UnknownNameError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data beside the checkout
Expected = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]  # NCHW x/y train, test, names


def _pixels(n: int, shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def _pickle(path: Path, content: dict) -> None:
    with open(path, "wb") as handle:
        pickle.dump(content, handle)


# ---- writers: one per registered file-based dataset, in the layout its real files use ------------

def write_cifar10(root: Path) -> Expected:
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    x, y = _pixels(120, (3, 32, 32), 0), np.arange(120) % 10
    for k in range(6):  # 5 train batches of 20, then the test batch of 20
        part = slice(20 * k, 20 * k + 20)
        name = f"data_batch_{k + 1}" if k < 5 else "test_batch"
        _pickle(folder / name, {b"batch_label": name.encode(), b"labels": y[part].tolist(),
                                b"data": x[part].reshape(20, 3072), b"filenames": [b"x.png"] * 20})
    names = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    _pickle(folder / "batches.meta", {b"label_names": [n.encode() for n in names], b"num_vis": 3072})
    return x[:100], y[:100], x[100:], y[100:], names


def write_cifar100(root: Path) -> Expected:
    folder = root / "cifar-100-python"
    folder.mkdir()
    x, fine = _pixels(40, (3, 32, 32), 1), (np.arange(40) * 7) % 100
    for name, part in (("train", slice(0, 30)), ("test", slice(30, 40))):
        _pickle(folder / name, {b"data": x[part].reshape(-1, 3072), b"fine_labels": fine[part].tolist(),
                                b"coarse_labels": (fine[part] // 5).tolist()})
    _pickle(folder / "meta", {b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
                              b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]})
    return x[:30], fine[:30], x[30:], fine[30:], tuple(f"fine{i}" for i in range(100))


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_fashion_mnist(root: Path) -> Expected:
    x, y = _pixels(18, (28, 28), 2), np.arange(18) % 10
    parts = {"train": (x[:12], y[:12], gzip.open, ".gz"), "t10k": (x[12:], y[12:], open, "")}  # gz and raw
    for prefix, (images, labels, opener, suffix) in parts.items():
        with opener(root / f"{prefix}-images-idx3-ubyte{suffix}", "wb") as handle:
            handle.write(_idx(images))
        with opener(root / f"{prefix}-labels-idx1-ubyte{suffix}", "wb") as handle:
            handle.write(_idx(labels))
    names = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
    return x[:12, None], y[:12], x[12:, None], y[12:], names


def write_svhn(root: Path) -> Expected:
    from scipy.io import savemat

    x, digits = _pixels(16, (3, 32, 32), 3), np.arange(16) % 10
    stored = np.where(digits == 0, 10, digits).astype(np.uint8)[:, None]  # SVHN stores the digit 0 as 10
    for name, part in (("train", slice(0, 12)), ("test", slice(12, 16))):
        savemat(root / f"{name}_32x32.mat", {"X": x[part].transpose(2, 3, 1, 0), "y": stored[part]})
    return x[:12], digits[:12], x[12:], digits[12:], tuple(str(d) for d in range(10))


WRITERS: dict[str, Callable[[Path], Expected]] = {
    "cifar10": write_cifar10, "cifar100": write_cifar100, "fashion_mnist": write_fashion_mnist, "svhn": write_svhn,
}
EXPECTED_FILES = {"cifar10": "data_batch_1", "cifar100": "meta", "fashion_mnist": "t10k-labels-idx1-ubyte",
                  "svhn": "train_32x32.mat"}


def _assert_matches(data: Dataset, expected: Expected) -> None:
    x_train, y_train, x_test, y_test, names = expected
    for part, x, y in ((data.train, x_train, y_train), (data.test, x_test, y_test)):
        assert part.images.dtype == torch.uint8 and part.images.is_contiguous()
        assert part.labels.dtype == torch.int64 and part.classes == names
        assert torch.equal(part.images, torch.from_numpy(x)) and part.labels.tolist() == y.tolist()


def test_every_file_dataset_has_a_writer():
    assert set(list_datasets()) == set(WRITERS) | {"digits"}


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_registered_dataset_round_trips_its_files(name, tmp_path):
    expected = WRITERS[name](tmp_path)
    data = load_dataset(name, data_dir=tmp_path)
    assert data.name == name
    _assert_matches(data, expected)


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_missing_files_name_the_expected_files_and_download(name, tmp_path):
    folder = {"cifar10": tmp_path / "cifar-10-batches-py", "cifar100": tmp_path / "cifar-100-python"}.get(name, tmp_path)
    with pytest.raises(MissingDataError) as error:
        load_dataset(name, data_dir=tmp_path)
    message = str(error.value)
    assert message.startswith(f"{name}: expected the files ")
    assert f"{EXPECTED_FILES[name]}" in message and f" in {folder}" in message
    assert message.endswith("; to fetch them (needs a network), add --download to the command "
                            "(in Python: load_dataset(..., download=True, data_dir=...))")
    assert "\n" not in message and (error.value.dataset, error.value.data_dir) == (name, tmp_path)


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_without_data_dir_the_message_asks_for_one(name, monkeypatch, tmp_path):
    monkeypatch.setattr(datasets_module, "FASHION_MNIST_DIR", tmp_path / "absent")  # Debian's folder may exist
    with pytest.raises(MissingDataError, match=r"add --download --data-dir DIR to the command") as error:
        load_dataset(name)
    assert error.value.data_dir is None and EXPECTED_FILES[name] in error.value.problem
    with pytest.raises(MissingDataError, match=f"^{name}: --download needs --data-dir, the folder to put the files"):
        load_dataset(name, download=True)


def test_digits_are_real_images_at_32():
    data = load_dataset("digits")
    assert data.train.images.shape == (1437, 3, 32, 32) and data.test.images.shape == (360, 3, 32, 32)
    assert data.train.image_shape == (3, 32, 32) and data.train.images.dtype == torch.uint8
    assert data.train.num_classes == 10 and data.test.labels.bincount().tolist() == [36] * 10
    assert data.train.images.min() == 0 and data.train.images.max() == 255
    assert torch.equal(data.train.images[:, 0], data.train.images[:, 2])  # grey, replicated to 3 channels
    again = load_dataset("digits")
    assert torch.equal(again.test.images, data.test.images)  # the split is fixed


def test_cifar10_rows_are_r_then_g_then_b_planes(tmp_path):
    x_train, y_train, *_ = write_cifar10(tmp_path)
    data = load_dataset("cifar10", data_dir=tmp_path)
    row = x_train[47].reshape(3072)  # image 7 of data_batch_3
    assert data.train.images[47, 0, 0, 0] == row[0] and data.train.images[47, 1, 0, 0] == row[1024]
    assert data.train.images[47, 2, 5, 9] == row[2048 + 5 * 32 + 9]
    assert data.train.labels[40:60].tolist() == y_train[40:60].tolist()
    assert data.train.classes[9] == "truck"


def test_cifar10_data_dir_may_be_the_batches_folder(tmp_path):
    expected = write_cifar10(tmp_path)
    _assert_matches(load_dataset("cifar10", data_dir=tmp_path / "cifar-10-batches-py"), expected)


def test_cifar100_fine_and_coarse_labels_with_meta_names(tmp_path):
    x_train, fine, *_ = write_cifar100(tmp_path)
    coarse = load_dataset("cifar100", data_dir=tmp_path, coarse_labels=True)
    assert coarse.train.num_classes == 20 and coarse.train.classes[3] == "coarse3"
    assert coarse.train.labels.tolist() == (fine // 5).tolist()
    assert torch.equal(coarse.train.images, torch.from_numpy(x_train))
    assert load_dataset("cifar100", data_dir=tmp_path).train.num_classes == 100


def test_coarse_labels_only_for_cifar100():
    with pytest.raises(AutoaugError, match="only to cifar100"):
        load_dataset("digits", coarse_labels=True)


def test_fashion_mnist_rejects_bad_magic_and_truncated_files(tmp_path):
    write_fashion_mnist(tmp_path)
    raw = (tmp_path / "t10k-images-idx3-ubyte").read_bytes()
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(bytes([0, 0, 9, 3]) + raw[4:])
    with pytest.raises(AutoaugError, match="t10k-images-idx3-ubyte: expected an idx file"):
        load_dataset("fashion_mnist", data_dir=tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(raw[:-5])
    with pytest.raises(AutoaugError, match=r"header says \[6, 28, 28\]"):
        load_dataset("fashion_mnist", data_dir=tmp_path)


def test_svhn_label_10_is_digit_0_and_x_is_hwcn(tmp_path):
    write_svhn(tmp_path)
    data = load_dataset("svhn", data_dir=tmp_path)
    assert data.train.labels[0] == 0 and data.train.labels[10] == 0 and data.train.labels[3] == 3
    from scipy.io import loadmat

    x = loadmat(tmp_path / "train_32x32.mat")["X"]
    assert data.train.images[5, 2, 7, 1] == x[7, 1, 2, 5]


def test_broken_pickle_is_reported_with_its_path(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(AutoaugError, match="test_batch: not a readable CIFAR pickle"):
        load_dataset("cifar10", data_dir=tmp_path)


@pytest.mark.parametrize("layout", ["NHWC", "NCHW", "NHW"])
def test_npz_layouts(layout, tmp_path):
    nchw = _pixels(10, (1 if layout == "NHW" else 3, 6, 5), 4)
    stored = {"NHWC": nchw.transpose(0, 2, 3, 1), "NCHW": nchw, "NHW": nchw[:, 0]}[layout]
    y = np.arange(10) % 4
    np.savez(tmp_path / "mine.npz", x_train=stored[:8], y_train=y[:8], x_test=stored[8:], y_test=y[8:])
    data = load_dataset(str(tmp_path / "mine.npz"))
    _assert_matches(data, (nchw[:8], y[:8], nchw[8:], y[8:], ("0", "1", "2", "3")))
    assert data.name == "mine"


def test_npz_class_names_and_errors(tmp_path):
    x, y = _pixels(6, (8, 8, 3), 5), np.array([0, 1, 2, 0, 1, 2])
    np.savez(tmp_path / "a.npz", x_train=x, y_train=y, x_test=x, y_test=y, class_names=np.array(["a", "b", "c"]))
    assert load_dataset(str(tmp_path / "a.npz")).train.classes == ("a", "b", "c")
    np.savez(tmp_path / "b.npz", x_train=x, y_train=y, x_test=x, y_test=y, class_names=np.array(["a", "b"]))
    with pytest.raises(AutoaugError, match=r"labels must lie in 0\.\.1"):
        load_dataset(str(tmp_path / "b.npz"))
    np.savez(tmp_path / "c.npz", x_train=x, y_train=y)
    with pytest.raises(AutoaugError, match="missing arrays x_test, y_test"):
        load_dataset(str(tmp_path / "c.npz"))
    np.savez(tmp_path / "d.npz", x_train=x / 255.0, y_train=y, x_test=x, y_test=y)
    with pytest.raises(AutoaugError, match="must be uint8"):
        load_dataset(str(tmp_path / "d.npz"))
    with pytest.raises(AutoaugError, match="no such .npz file"):
        load_dataset(str(tmp_path / "absent.npz"))


def test_jpeg_pack_decodes_real_cifar10_photos(cifar10_mini):
    """The JPEG-pack .npz (../shared/data/cifar10-jpeg.npz's format) loads directly; pixels as Pillow decodes them."""
    data = load_dataset(str(cifar10_mini))
    assert (len(data.train), len(data.test), data.train.image_shape) == (1000, 200, (3, 32, 32))
    assert data.train.classes[:2] == ("airplane", "automobile") and data.test.labels.bincount().tolist() == [20] * 10
    with np.load(cifar10_mini) as pack:
        blob, offsets = pack["test_jpeg"], pack["test_offsets"]
        for i in (0, 77, 199):
            with Image.open(io.BytesIO(blob[offsets[i]:offsets[i + 1]].tobytes())) as image:
                assert np.array_equal(np.asarray(image.convert("RGB")), data.test.images[i].permute(1, 2, 0).numpy())
    mean = data.train.images.float().mean(dim=(0, 2, 3))
    assert torch.allclose(mean, torch.tensor([125.3, 122.9, 113.9]), atol=8)  # CIFAR-10's known channel means


def test_jpeg_pack_errors(cifar10_mini, tmp_path):
    with np.load(cifar10_mini) as pack:
        arrays = dict(pack)
    np.savez(tmp_path / "short.npz", **{**arrays, "train_offsets": arrays["train_offsets"][:-1]})
    with pytest.raises(AutoaugError, match="train_offsets must rise from 0"):
        load_dataset(str(tmp_path / "short.npz"))
    broken = arrays["test_jpeg"].copy()
    broken[: arrays["test_offsets"][1]] = 7  # the first file is no JPEG any more
    np.savez(tmp_path / "broken.npz", **{**arrays, "test_jpeg": broken})
    with pytest.raises(AutoaugError, match="test JPEG 0 cannot be decoded"):
        load_dataset(str(tmp_path / "broken.npz"))


def _write_folder(root: Path, sizes: dict[str, tuple[int, int]]) -> dict[str, np.ndarray]:
    """PNG files named in ``sizes`` as ``split/class/file`` -> (width, height); returns their pixels."""
    pixels = {}
    for k, (name, (width, height)) in enumerate(sorted(sizes.items())):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        pixels[name] = _pixels(1, (height, width, 3), 10 + k)[0]
        Image.fromarray(pixels[name]).save(root / name)
    return pixels


def test_image_folder_decodes_pngs_by_class(tmp_path):
    names = ["train/dog/1.png", "train/ant/2.png", "train/ant/1.png", "test/dog/9.png"]
    pixels = _write_folder(tmp_path, {n: (7, 5) for n in names})
    (tmp_path / "train" / "ant" / "notes.txt").write_text("not an image")
    data = load_dataset(str(tmp_path))
    assert data.train.classes == ("ant", "dog") and data.train.labels.tolist() == [0, 0, 1]
    assert data.train.image_shape == (3, 5, 7)
    order = ["train/ant/1.png", "train/ant/2.png", "train/dog/1.png"]
    assert torch.equal(data.train.images, torch.from_numpy(np.stack([pixels[n] for n in order]).transpose(0, 3, 1, 2)))
    assert data.test.labels.tolist() == [1]


def test_image_folder_refuses_a_second_size_naming_the_file(tmp_path):
    _write_folder(tmp_path, {"train/a/1.png": (8, 8), "train/b/1.png": (8, 8), "test/a/1.png": (8, 9)})
    with pytest.raises(AutoaugError, match=r"test/a/1\.png: size 8x9 differs from the 8x8"):
        load_dataset(str(tmp_path))
    (tmp_path / "test" / "a" / "1.png").unlink()
    with pytest.raises(AutoaugError, match="no images"):
        load_dataset(str(tmp_path))
    with pytest.raises(AutoaugError, match=r"expected a subfolder train/<class>/ .*test/<class>/ for evaluate"):
        load_dataset(str(tmp_path / "train"))


def test_image_folder_without_test_loads_for_a_search_and_refuses_evaluation(tmp_path):
    pixels = _write_folder(tmp_path, {"train/a/1.png": (6, 4), "train/b/1.png": (6, 4), "train/b/2.png": (6, 4)})
    data = load_dataset(str(tmp_path))
    assert data.test is None and data.train.labels.tolist() == [0, 1, 1]
    assert torch.equal(data.train.images[0], torch.from_numpy(pixels["train/a/1.png"]).permute(2, 0, 1))
    with pytest.raises(AutoaugError, match=r"no test split \(an image folder needs test/<class>/"):
        data.test_split()
    from autoaug.evaluate import EvaluationOptions, run_evaluation
    with pytest.raises(AutoaugError, match="no test split"):  # before any training starts
        run_evaluation(EvaluationOptions(("cropflip",), dataset=str(tmp_path), model="proxy_tiny", epochs=1,
                                         device="cpu"))


def test_unknown_name_suggests_and_lists_paths():
    with pytest.raises(UnknownNameError, match="did you mean 'cifar10'.*known: cifar10, cifar100, digits") as error:
        load_dataset("cifar01")
    assert ".npz" in str(error.value) and "train/<class>/" in str(error.value)


# ---- splits ----------------------------------------------------------------------------------------

def _numbered(counts: list[int]) -> ArrayData:
    """Each image carries its own index in its first two pixels, so parts can be compared by identity."""
    n = sum(counts)
    images = torch.zeros(n, 1, 2, 2, dtype=torch.uint8)
    images[:, 0, 0, 0], images[:, 0, 0, 1] = torch.arange(n) % 256, torch.arange(n) // 256
    labels = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    return ArrayData(images, labels, tuple(f"c{k}" for k in range(len(counts))))


def _ids(data: ArrayData) -> set[int]:
    return set((data.images[:, 0, 0, 0].long() + 256 * data.images[:, 0, 0, 1].long()).tolist())


def _spread(data: ArrayData) -> int:
    counts = data.labels.bincount(minlength=data.num_classes)
    return int(counts.max() - counts.min())


def test_split_is_disjoint_stratified_and_covers_the_training_set():
    data = _numbered([30, 50, 41, 90])
    train, val = split_train_val(data, val_size=0.25, seed=3)
    # shares 53 * [30, 50, 41, 90] / 211 = 7.54, 12.56, 10.30, 22.61: floors 51, the two largest remainders +1
    assert val.labels.bincount().tolist() == [7, 13, 10, 23] and len(train) == 158
    assert not _ids(train) & _ids(val) and _ids(train) | _ids(val) == set(range(211))
    for part in (train, val):  # each image keeps its own label
        assert torch.equal(part.labels, data.labels[sorted(_ids(part))])


def test_split_is_seeded_and_train_size_is_stratified():
    data = _numbered([30, 50, 41, 90])
    train, val = split_train_val(data, val_size=40, seed=1, train_size=70)
    again, val_again = split_train_val(data, val_size=40, seed=1, train_size=70)
    assert torch.equal(train.images, again.images) and torch.equal(val.images, val_again.images)
    # val: 40 * shares = 5.69, 9.48, 7.77, 17.06 -> [6, 9, 8, 17]; the rest [24, 41, 33, 73] of 171 images,
    # 70 * shares = 9.82, 16.78, 13.51, 29.88 -> [10, 17, 13, 30]
    assert val.labels.bincount().tolist() == [6, 9, 8, 17]
    assert train.labels.bincount().tolist() == [10, 17, 13, 30] and not _ids(train) & _ids(val)
    _, other_val = split_train_val(data, val_size=40, seed=2)
    assert _ids(other_val) != _ids(val)
    _, full_val = split_train_val(data, val_size=40, seed=1)
    assert _ids(full_val) == _ids(val)  # validation does not depend on train_size


def test_split_of_digits_like_reduced_cifar():
    full = load_dataset("digits").train
    train, val = split_train_val(full, val_size=300, seed=0, train_size=400)
    assert len(train) == 400 and len(val) == 300
    share = full.labels.bincount().double() / len(full)
    assert ((val.labels.bincount() - 300 * share).abs() < 1).all()
    assert ((train.labels.bincount() - 400 * share).abs() < 1.01).all()


def test_split_keeps_the_class_shares_of_an_imbalanced_set():
    """Stratified means proportional: 900/90/10 images give 90/9/1 to validation, not 34/33/33."""
    train, val = split_train_val(_numbered([900, 90, 10]), val_size=0.1, seed=0)
    assert val.labels.bincount().tolist() == [90, 9, 1]
    assert train.labels.bincount().tolist() == [810, 81, 9]


@pytest.mark.parametrize(("sizes", "message"), [
    (dict(val_size=0), r"val_size must be a count in 1\.\.211"),
    (dict(val_size=-0.1), "got -0.1"),
    (dict(val_size=1.5), r"or a fraction in \(0, 1\), got 1\.5"),
    (dict(val_size=300), "got 300"),
    (dict(val_size=211), "takes all 211 training images"),
    (dict(val_size=0.001), "rounds to 0 images"),
    (dict(val_size=20, train_size=192), r"train_size must be a count in 1\.\.191"),
    (dict(val_size=20, train_size=0), "got 0"),
])
def test_split_rejects_bad_sizes_with_the_numbers(sizes, message):
    with pytest.raises(AutoaugError, match=message):
        split_train_val(_numbered([30, 50, 41, 90]), seed=0, **sizes)


def test_balanced_subset():
    data = _numbered([30, 50, 41, 90])
    part = balanced_subset(data, size=99, seed=0)
    assert len(part) == 99 and _spread(part) <= 1 and _ids(part) <= set(range(211))
    assert _ids(balanced_subset(data, size=99, seed=0)) == _ids(part) != _ids(balanced_subset(data, size=99, seed=1))
    assert balanced_subset(data, size=123, seed=5).labels.bincount().tolist() == [30, 31, 31, 31]
    with pytest.raises(AutoaugError, match=r"subset size must be a count in 1\.\.211"):
        balanced_subset(data, size=212, seed=0)


def test_array_data_checks_and_subsets():
    data = _numbered([3, 2])
    assert data.num_classes == 2 and data.image_shape == (1, 2, 2) and len(data) == 5
    part = data.subset(torch.tensor([4, 0]))
    assert part.labels.tolist() == [1, 0] and _ids(part) == {4, 0}
    with pytest.raises(AutoaugError, match=r"labels must lie in 0\.\.1"):
        ArrayData(data.images, data.labels + 1, data.classes)
    with pytest.raises(AutoaugError, match="uint8"):
        ArrayData(data.images.float(), data.labels, data.classes)
    with pytest.raises(AutoaugError, match="share one shape"):
        Dataset("x", data, ArrayData(torch.zeros(1, 1, 3, 3, dtype=torch.uint8), torch.zeros(1).long(), data.classes))


# ---- the shared real CIFAR-10 copy (JPEG-decoded), through our loader --------------------------------

@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "cifar10-jpeg.npz").is_file(), reason="no shared cifar10-jpeg.npz")
def test_unpacked_cifar10_subset_loads_in_both_formats(tmp_path):
    script = str(SHARED / "unpack_cifar10.py")
    for fmt, out in (("torchvision", tmp_path), ("npz", tmp_path / "c.npz")):
        subprocess.run([sys.executable, script, "--format", fmt, "--out", str(out), "--limit", "500"], check=True)
    data = load_dataset("cifar10", data_dir=tmp_path)
    assert len(data.train) == 500 and len(data.test) == 100 and data.train.image_shape == (3, 32, 32)
    assert data.train.classes[0] == "airplane" and data.train.labels.bincount().min() > 20
    mean = data.train.images.float().mean(dim=(0, 2, 3))
    assert torch.allclose(mean, torch.tensor([125.3, 122.9, 113.9]), atol=10)  # CIFAR-10's known channel means
    same = load_dataset(str(tmp_path / "c.npz"))  # NHWC arrays of the same images
    assert torch.equal(same.train.images, data.train.images) and torch.equal(same.test.labels, data.test.labels)

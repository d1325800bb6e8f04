"""Datasets as uint8 tensors: a registry of named sets, files by path, and seeded validation splits."""
from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from autoaug import dataset_formats as formats
from autoaug.errors import AutoaugError, Registry, UnknownNameError

if TYPE_CHECKING:  # torch loads where images are made, so that listing datasets stays fast
    import torch

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")  # where Debian's dataset-fashion-mnist installs
DIGIT_NAMES = tuple(str(d) for d in range(10))
FASHION_MNIST_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                       "Bag", "Ankle boot")


@dataclass(frozen=True)
class ArrayData:
    """Images ``[N, C, H, W]`` uint8 (contiguous) with int64 labels ``[N]`` in ``0..len(classes) - 1``."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        import torch

        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise AutoaugError(f"images must be uint8 [N, C, H, W], got {self.images.dtype} "
                               f"{list(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.shape != self.images.shape[:1]:
            raise AutoaugError(f"labels must be int64 [{len(self.images)}] (one per image), got "
                               f"{self.labels.dtype} {list(self.labels.shape)}")
        if len(self.labels) and not 0 <= int(self.labels.min()) <= int(self.labels.max()) < len(self.classes):
            raise AutoaugError(f"labels must lie in 0..{len(self.classes) - 1} ({len(self.classes)} classes), got "
                               f"{int(self.labels.min())}..{int(self.labels.max())}")
        # frozen: normalise through object.__setattr__ so every ArrayData is contiguous with a tuple of names
        object.__setattr__(self, "images", self.images.contiguous())
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def num_classes(self) -> int:
        """The number of class names (a class may have no images in a subset)."""
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of every image."""
        channels, height, width = self.images.shape[1:]
        return channels, height, width

    def subset(self, indices: torch.Tensor) -> ArrayData:
        """The images at ``indices`` (an index or boolean tensor), in that order, as a new copy."""
        return ArrayData(self.images[indices].contiguous(), self.labels[indices].contiguous(), self.classes)


@dataclass(frozen=True)
class Dataset:
    """A named dataset: the training images (validation is carved from these) and the held-out test set.

    ``test`` is None for an image folder without ``test/``: searches never read it; ``test_split``
    says what is missing where a test set is needed.
    """

    name: str
    train: ArrayData
    test: ArrayData | None

    def __post_init__(self) -> None:
        if self.test is None:
            return
        if self.train.image_shape != self.test.image_shape:
            raise AutoaugError(f"{self.name}: train images are {list(self.train.image_shape)} but test images are "
                               f"{list(self.test.image_shape)}; both splits must share one shape")
        if self.train.classes != self.test.classes:
            raise AutoaugError(f"{self.name}: train and test must name the same classes")

    def test_split(self) -> ArrayData:
        """The test set; an error saying what to add where there is none."""
        if self.test is None:
            raise AutoaugError(f"{self.name}: no test split (an image folder needs test/<class>/ subfolders "
                               "to evaluate on; searches need only train/)")
        return self.test


class DatasetLoader(Protocol):
    """Loads one registered dataset; ``data_dir`` is None when the user gave none."""

    def __call__(self, data_dir: Path | None, *, download: bool, coarse_labels: bool) -> Dataset: ...


@dataclass(frozen=True)
class DatasetEntry:
    """A registry entry: the loader, whether it knows coarse labels (only CIFAR-100 does), and for
    ``autoaug list datasets``, where its files go and how to get them."""

    loader: DatasetLoader
    has_coarse_labels: bool = False
    files: str = ""
    source: str = ""


DATASETS = Registry("dataset")


def register_dataset(name: str, *, has_coarse_labels: bool = False, files: str = "",
                     source: str = "") -> Callable[[DatasetLoader], DatasetLoader]:
    """Decorator adding a loader to ``DATASETS`` under ``name`` (a duplicate name is an error)."""
    def wrap(loader: DatasetLoader) -> DatasetLoader:
        DATASETS.add(name, DatasetEntry(loader, has_coarse_labels, files, source))
        return loader
    return wrap


def list_datasets() -> list[str]:
    """The registered dataset names, sorted (paths to .npz files and image folders also load)."""
    return sorted(DATASETS)


def load_dataset(name: str, *, data_dir: str | Path | None = None, download: bool = False,
                 coarse_labels: bool = False) -> Dataset:
    """A registered dataset by name, or an ``.npz`` file or ``train/``+``test/`` image folder by path.

    ``data_dir`` is the folder holding a registered dataset's files; with ``download=True`` files that
    are absent are fetched into it with torchvision (needs a network). ``coarse_labels`` picks
    CIFAR-100's 20 superclasses instead of its 100 classes.
    """
    if name in DATASETS:
        entry = DATASETS[name]
        if coarse_labels and not entry.has_coarse_labels:
            raise AutoaugError(f"coarse_labels applies only to {', '.join(_with_coarse_labels())}, not to {name!r}")
        folder = Path(data_dir).expanduser() if data_dir is not None else None
        return entry.loader(folder, download=download, coarse_labels=coarse_labels)
    if coarse_labels:
        raise AutoaugError(f"coarse_labels applies only to {', '.join(_with_coarse_labels())}, not to {name!r}")
    path = Path(name).expanduser()
    if path.suffix.lower() == ".npz":
        if not path.is_file():
            raise AutoaugError(f"{path}: no such .npz file")
        return _from_npz(path)
    if path.is_dir():
        return _from_folder(path)
    raise _unknown(name)


def _with_coarse_labels() -> list[str]:
    return sorted(name for name, entry in DATASETS.items() if entry.has_coarse_labels)


def _unknown(name: str) -> UnknownNameError:
    error = UnknownNameError("dataset", name, DATASETS)
    error.args = (f"{error}; also accepted: a path to an .npz file (x_train, y_train, x_test, y_test) or to "
                  "an image folder with train/<class>/ subfolders (and test/<class>/ for evaluate)",)
    return error


def _arrays(split: formats.Split, classes: tuple[str, ...], source: object) -> ArrayData:
    """Numpy images (any supported layout) and labels -> ArrayData; errors name ``source``."""
    images, labels = formats.to_nchw(split[0], source), formats.to_labels(split[1], source)
    if len(images) != len(labels):
        raise AutoaugError(f"{source}: {len(images)} images but {len(labels)} labels")
    import torch

    try:
        return ArrayData(torch.from_numpy(images), torch.from_numpy(labels), classes)
    except AutoaugError as error:
        raise AutoaugError(f"{source}: {error}") from None


# ---- registered datasets -------------------------------------------------------------------------

_DOWNLOAD = "--download --data-dir DIR fetches them (torchvision; needs a network)"


@register_dataset("digits", files="none: bundled with scikit-learn", source="nothing to get")
def _digits(data_dir: Path | None, *, download: bool, coarse_labels: bool) -> Dataset:
    """scikit-learn's 1,797 real 8x8 handwritten digits as 3x32x32, in a fixed stratified 80/20 split."""
    import torch
    import torch.nn.functional as nnf
    from sklearn.datasets import load_digits  # ships with scikit-learn: needs no data_dir and no network

    bunch = load_digits()
    small = torch.from_numpy(bunch.images).float()[:, None] * (255.0 / 16.0)  # values 0..16 -> 0..255
    big = nnf.interpolate(small, size=(32, 32), mode="bilinear", align_corners=False)
    images = big.round().clamp(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    data = ArrayData(images, torch.from_numpy(bunch.target).long(), DIGIT_NAMES)
    test = _balanced_indices(data, 360, np.random.default_rng(0), what="digits test split")
    return Dataset("digits", data.subset(_complement(test, len(data))), data.subset(test))


@register_dataset("cifar10", files="DIR/cifar-10-batches-py/ (python pickles) or DIR itself",
                  source=f"{_DOWNLOAD}, or unpack cifar-10-python.tar.gz from www.cs.toronto.edu/~kriz/cifar.html")
def _cifar10(data_dir: Path | None, *, download: bool, coarse_labels: bool) -> Dataset:
    """``<data_dir>/cifar-10-batches-py/``: data_batch_1..5, test_batch and batches.meta pickles."""
    names = [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch", "batches.meta"]
    paths = formats.locate("cifar10", _folders(data_dir, "cifar-10-batches-py"), names, download=download,
                           data_dir=data_dir)
    classes = formats.read_cifar_names(paths[6], "label_names")
    train = _arrays(formats.read_cifar_split(paths[:5], "labels"), classes, paths[0].parent)
    return Dataset("cifar10", train, _arrays(formats.read_cifar_split(paths[5:6], "labels"), classes, paths[5]))


@register_dataset("cifar100", has_coarse_labels=True, files="DIR/cifar-100-python/ (python pickles) or DIR itself",
                  source=f"{_DOWNLOAD}, or unpack cifar-100-python.tar.gz from www.cs.toronto.edu/~kriz/cifar.html")
def _cifar100(data_dir: Path | None, *, download: bool, coarse_labels: bool) -> Dataset:
    """``<data_dir>/cifar-100-python/``: train, test and meta pickles; 100 fine or 20 coarse classes."""
    paths = formats.locate("cifar100", _folders(data_dir, "cifar-100-python"), ["train", "test", "meta"],
                           download=download, data_dir=data_dir)
    kind = "coarse" if coarse_labels else "fine"
    classes = formats.read_cifar_names(paths[2], f"{kind}_label_names")
    train, test = (_arrays(formats.read_cifar_split([p], f"{kind}_labels"), classes, p) for p in paths[:2])
    return Dataset("cifar100", train, test)


@register_dataset("fashion_mnist", files=f"DIR or DIR/FashionMNIST/raw/ (4 idx files); default {FASHION_MNIST_DIR}",
                  source=f"apt-get install dataset-fashion-mnist (Debian), or {_DOWNLOAD}")
def _fashion_mnist(data_dir: Path | None, *, download: bool, coarse_labels: bool) -> Dataset:
    """The four idx files (gzipped or not) in data_dir, by default where Debian's package puts them."""
    folders = [data_dir, data_dir / "FashionMNIST" / "raw"] if data_dir else [FASHION_MNIST_DIR]
    hint = "" if data_dir else " (apt-get install dataset-fashion-mnist puts them there)"
    stems = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    paths = formats.locate("fashion_mnist", folders, stems, suffixes=("", ".gz"), download=download,
                           data_dir=data_dir, hint=hint)
    x_train, y_train, x_test, y_test = (formats.read_idx(p, ndim=n) for p, n in zip(paths, (3, 1, 3, 1)))
    return Dataset("fashion_mnist", _arrays((x_train, y_train), FASHION_MNIST_NAMES, paths[0]),
                   _arrays((x_test, y_test), FASHION_MNIST_NAMES, paths[2]))


@register_dataset("svhn", files="DIR/train_32x32.mat and DIR/test_32x32.mat",
                  source=f"{_DOWNLOAD}, or the cropped-digits .mat files from ufldl.stanford.edu/housenumbers")
def _svhn(data_dir: Path | None, *, download: bool, coarse_labels: bool) -> Dataset:
    """train_32x32.mat and test_32x32.mat (the cropped digits) in data_dir."""
    paths = formats.locate("svhn", _folders(data_dir), ["train_32x32.mat", "test_32x32.mat"], download=download,
                           data_dir=data_dir)
    train, test = (_arrays(formats.read_svhn(p), DIGIT_NAMES, p) for p in paths)
    return Dataset("svhn", train, test)


def _folders(data_dir: Path | None, subfolder: str | None = None) -> list[Path]:
    """Where to look: ``data_dir/subfolder`` (torchvision's layout) first, then data_dir itself."""
    if data_dir is None:
        return []
    return [data_dir / subfolder, data_dir] if subfolder else [data_dir]


def _from_npz(path: Path) -> Dataset:
    train, test, names = formats.read_npz(path)
    if names is None:  # classes are named by number, enough of them for every label seen
        labels = [formats.to_labels(y, path) for y in (train[1], test[1])]
        names = tuple(str(k) for k in range(max((int(y.max()) + 1 for y in labels if len(y)), default=0)))
    return Dataset(path.stem, _arrays(train, names, f"{path} (train)"), _arrays(test, names, f"{path} (test)"))


def _from_folder(root: Path) -> Dataset:
    train, test, classes = formats.read_image_folder(root)
    return Dataset(root.name, _arrays(train, classes, root / "train"),
                   None if test is None else _arrays(test, classes, root / "test"))


# ---- class-balanced subsets and validation splits ------------------------------------------------

def _balanced_indices(data: ArrayData, size: int, rng: np.random.Generator, *, what: str) -> np.ndarray:
    """Sorted indices of ``size`` images with per-class counts differing by at most 1 (present classes)."""
    labels = data.labels.cpu().numpy()
    present = np.unique(labels)
    counts = np.bincount(labels)[present]
    if size < len(present):
        raise AutoaugError(f"{what}: {size} images is fewer than one for each of the {len(present)} classes")
    base, extra = divmod(size, len(present))
    roomy = np.flatnonzero(counts > base)  # classes that can give one image more than the base quota
    if counts.min() < base or len(roomy) < extra:
        most = counts.min() * len(present) + np.count_nonzero(counts > counts.min())
        short = data.classes[present[counts.argmin()]]
        raise AutoaugError(f"{what}: cannot take {size} class-balanced images from {len(data)}: class {short!r} has "
                           f"only {counts.min()} (at most {most} possible)")
    quotas = np.full(len(present), base)
    quotas[rng.choice(roomy, size=extra, replace=False)] += 1
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(present, quotas)]
    return np.sort(np.concatenate(chosen))


def _stratified_indices(data: ArrayData, size: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``size`` images, each class taking its share of ``data`` (largest remainders).

    Proportional, as scikit-learn's stratified splits: an imbalanced set keeps its class shares in both
    parts, where equal quotas would over-represent rare classes in one part and drain them from the other.
    """
    labels = data.labels.cpu().numpy()
    counts = np.bincount(labels, minlength=data.num_classes)
    exact = counts * (size / len(labels))
    quotas = np.floor(exact).astype(np.int64)
    # ties in the remainders go to a seeded random class, not always to the lowest class index
    order = np.lexsort((rng.random(len(counts)), -(exact - quotas)))
    quotas[order[:size - quotas.sum()]] += 1
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in enumerate(quotas) if q]
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def _complement(indices: np.ndarray, total: int) -> np.ndarray:
    keep = np.ones(total, dtype=bool)
    keep[indices] = False
    return np.flatnonzero(keep)


def _count(size: int | float, total: int, *, what: str) -> int:
    """A count (``300``, or ``300.0`` as read from a float option) or a fraction in (0, 1) of ``total``."""
    real = isinstance(size, numbers.Real) and not isinstance(size, bool)
    whole = real and (isinstance(size, numbers.Integral) or (size >= 1 and float(size).is_integer()))
    if not ((whole and 0 < size <= total) or (real and not whole and 0 < size < 1)):
        raise AutoaugError(f"{what} must be a count in 1..{total} (of {total} images) or a fraction in (0, 1), "
                           f"got {size!r}")
    count = int(size) if whole else int(round(size * total))
    if count == 0:
        raise AutoaugError(f"{what} {size} of {total} images rounds to 0 images; give a larger fraction")
    return count


def balanced_subset(data: ArrayData, *, size: int, seed: int) -> ArrayData:
    """A seeded class-balanced subset of ``size`` images (per-class counts differ by at most 1)."""
    import torch

    _check_whole(size, len(data), what="subset size", detail=f"the {len(data)} images")
    return data.subset(torch.from_numpy(_balanced_indices(data, int(size), np.random.default_rng(seed),
                                                          what="subset size")))


def _check_whole(size: object, limit: int, *, what: str, detail: str) -> None:
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or not 0 < size <= limit:
        raise AutoaugError(f"{what} must be a count in 1..{limit} ({detail}), got {size!r}")


def split_train_val(train: ArrayData, *, val_size: int | float, seed: int,
                    train_size: int | None = None) -> tuple[ArrayData, ArrayData]:
    """A seeded, class-stratified ``(train, validation)`` split carved from the training data only.

    ``val_size`` is a count or a fraction in (0, 1) of ``train``; each class gives its proportional share
    (largest remainders), so both parts keep the class balance of ``train``. ``train_size`` reduces the
    rest to a stratified subset (as AutoAugment's reduced CIFAR-10 of 4,000 images). The validation part
    depends only on ``seed`` and ``val_size``, so runs with different ``train_size`` validate alike.
    """
    import torch

    count = _count(val_size, len(train), what="val_size")
    if count >= len(train):
        raise AutoaugError(f"val_size {val_size} takes all {len(train)} training images; leave some to train on")
    rng = np.random.default_rng(seed)
    val = _stratified_indices(train, count, rng)
    rest = _complement(val, len(train))
    if train_size is not None:
        _check_whole(train_size, len(rest), what="train_size",
                     detail=f"the {len(train)} training images less {count} for validation")
        remaining = train.subset(torch.from_numpy(rest))
        rest = rest[_stratified_indices(remaining, int(train_size), rng)]
    return train.subset(torch.from_numpy(rest)), train.subset(torch.from_numpy(val))

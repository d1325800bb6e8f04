"""Dataset file formats read into numpy arrays: CIFAR pickles, idx, SVHN .mat, .npz and image folders."""
from __future__ import annotations

import gzip
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from autoaug.errors import AutoaugError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
# a pack of JPEG files: each split's files concatenated, with offsets (file i is jpeg[offsets[i]:offsets[i + 1]])
JPEG_PACK_KEYS = ("train_jpeg", "train_offsets", "y_train", "test_jpeg", "test_offsets", "y_test")
Split = tuple[np.ndarray, np.ndarray]  # images (any supported layout), integer labels


# ---- finding files, downloading what is absent --------------------------------------------------

def _existing(folder: Path, name: str, suffixes: Sequence[str]) -> Path | None:
    return next((folder / (name + s) for s in suffixes if (folder / (name + s)).is_file()), None)


def _find(folders: Sequence[Path], names: Sequence[str], suffixes: Sequence[str]) -> list[Path] | None:
    for folder in folders:
        paths = [_existing(folder, name, suffixes) for name in names]
        if all(p is not None for p in paths):
            return paths
    return None


class MissingDataError(AutoaugError):
    """A named dataset's files are not where they were looked for; ``--download`` can fetch them.

    ``problem`` says what is missing; the message adds how to fetch it, and the command line, which knows
    the command the user ran, replaces that with the exact command (see ``autoaug_cli``).
    """

    def __init__(self, dataset: str, data_dir: Path | None, problem: str) -> None:
        self.dataset, self.data_dir, self.problem = dataset, data_dir, problem
        flags = "--download" if data_dir is not None else "--download --data-dir DIR"
        super().__init__(f"{problem}; to fetch them (needs a network), add {flags} to the command "
                         "(in Python: load_dataset(..., download=True, data_dir=...))")


def locate(dataset: str, folders: Sequence[Path], names: Sequence[str], *, suffixes: Sequence[str] = ("",),
           download: bool, data_dir: Path | None, hint: str = "") -> list[Path]:
    """The paths of ``names`` in the first of ``folders`` that holds them all, downloading them if asked.

    ``suffixes`` are the accepted endings of each name (``("", ".gz")``: compressed or not).
    """
    shown = ", ".join(n + ("(.gz)" if ".gz" in suffixes else "") for n in names)
    paths = _find(folders, names, suffixes)
    if paths is None and download:
        if data_dir is None:
            raise MissingDataError(dataset, None, f"{dataset}: --download needs --data-dir, the folder to put "
                                                  f"the files {shown} in")
        from autoaug.download import download as fetch  # torchvision's downloader loads only when needed

        fetch(dataset, data_dir)
        paths = _find(folders, names, suffixes)
        if paths is None:
            raise AutoaugError(f"{dataset}: downloaded into {data_dir}, but {shown} are still not in {folders[0]}")
    if paths is None:
        if not folders:
            raise MissingDataError(dataset, None, f"{dataset}: no --data-dir given to find its files ({shown}) in")
        absent = " (no such folder)" if not folders[0].is_dir() else ""
        raise MissingDataError(dataset, data_dir, f"{dataset}: expected the files {shown} in {folders[0]}"
                                                  f"{absent}{hint}")
    return paths


# ---- array layout --------------------------------------------------------------------------------

def to_nchw(images: np.ndarray, source: object) -> np.ndarray:
    """uint8 images as NHW (grayscale), NHWC or NCHW with 1 or 3 channels -> a writable NCHW array."""
    x = np.asarray(images)
    if x.dtype != np.uint8:
        raise AutoaugError(f"{source}: images must be uint8 (0..255), got {x.dtype}")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise AutoaugError(f"{source}: images must be [N, H, W], [N, H, W, C] or [N, C, H, W] with 1 or 3 "
                           f"channels, got shape {list(np.shape(images))}")
    x = np.ascontiguousarray(x)
    return x if x.flags.writeable else x.copy()  # torch.from_numpy warns on read-only buffers


def to_labels(labels: np.ndarray, source: object) -> np.ndarray:
    """Integer class labels of any shape [N] or [N, 1] -> int64 [N]."""
    y = np.asarray(labels)
    if not np.issubdtype(y.dtype, np.integer):
        raise AutoaugError(f"{source}: labels must be integers, got {y.dtype}")
    return y.reshape(-1).astype(np.int64)


# ---- CIFAR-10 / CIFAR-100 python pickles ---------------------------------------------------------

def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as handle:
            # the original files were pickled by Python 2; "bytes" keeps their keys as bytes
            content = pickle.load(handle, encoding="bytes")
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, AttributeError, ImportError) as error:
        raise AutoaugError(f"{path}: not a readable CIFAR pickle ({type(error).__name__}: {error})") from None
    if not isinstance(content, dict):
        raise AutoaugError(f"{path}: expected a pickled dict, got {type(content).__name__}")
    return content


def _field(content: dict, key: str, path: Path) -> object:
    for candidate in (key.encode(), key):  # bytes keys in the originals, str keys from Python 3 writers
        if candidate in content:
            return content[candidate]
    raise AutoaugError(f"{path}: no {key!r} entry (has {', '.join(sorted(map(_text, content)))})")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_cifar_split(paths: Sequence[Path], label_key: str) -> Split:
    """Batches of rows of 3072 bytes (the R plane, then G, then B, each 32x32 row-major) -> NCHW."""
    images, labels = [], []
    for path in paths:
        content = _unpickle(path)
        data = np.asarray(_field(content, "data", path))
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise AutoaugError(f"{path}: 'data' must be [N, 3072] (3x32x32 rows), got {list(data.shape)}")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(to_labels(np.asarray(_field(content, label_key, path)), path))
    return np.concatenate(images), np.concatenate(labels)


def read_cifar_names(path: Path, key: str) -> tuple[str, ...]:
    """Class names from a CIFAR meta pickle (``label_names``, ``fine_label_names``, ...)."""
    return tuple(_text(name) for name in _field(_unpickle(path), key, path))


# ---- idx (MNIST, Fashion-MNIST) ------------------------------------------------------------------

def read_idx(path: Path, *, ndim: int) -> np.ndarray:
    """An idx file of unsigned bytes, gzipped or not: magic 0x00 0x00 0x08 <ndim>, big-endian dims, data."""
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as error:
        raise AutoaugError(f"{path}: cannot read ({type(error).__name__}: {error})") from None
    if len(raw) < 4 + 4 * ndim or raw[:4] != bytes([0, 0, 8, ndim]):
        raise AutoaugError(f"{path}: expected an idx file of unsigned bytes with {ndim} dimensions (magic "
                           f"00 00 08 {ndim:02x}), got magic {raw[:4].hex(' ') or 'nothing'}")
    shape = tuple(int.from_bytes(raw[4 + 4 * k: 8 + 4 * k], "big") for k in range(ndim))
    body = memoryview(raw)[4 + 4 * ndim:]
    if len(body) != int(np.prod(shape)):
        raise AutoaugError(f"{path}: header says {list(shape)} ({int(np.prod(shape))} bytes) but holds "
                           f"{len(body)} bytes")
    return np.frombuffer(body, dtype=np.uint8).reshape(shape).copy()


# ---- SVHN cropped digits (.mat) ------------------------------------------------------------------

def read_svhn(path: Path) -> Split:
    """``X`` [32, 32, 3, N] and ``y`` [N, 1] with the digit 0 stored as label 10 -> NCHW, labels 0..9."""
    from scipy.io import loadmat

    try:
        content = loadmat(path)
    except Exception as error:  # scipy raises several unrelated types for a bad file
        raise AutoaugError(f"{path}: not a readable .mat file ({type(error).__name__}: {error})") from None
    if "X" not in content or "y" not in content:
        raise AutoaugError(f"{path}: expected variables X [32, 32, 3, N] and y [N, 1]")
    x = np.asarray(content["X"])
    if x.ndim != 4 or x.shape[2] != 3:
        raise AutoaugError(f"{path}: X must be [H, W, 3, N], got {list(x.shape)}")
    return x.transpose(3, 2, 0, 1), to_labels(content["y"], path) % 10


# ---- .npz and image folders ------------------------------------------------------------------------

def read_npz(path: Path) -> tuple[Split, Split, tuple[str, ...] | None]:
    """x_train, y_train, x_test, y_test (NHWC, NCHW or NHW uint8) and optional class_names; or a JPEG pack
    (train_jpeg, train_offsets, y_train and the same for test, as ../shared/data/cifar10-jpeg.npz)."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            if all(k in arrays for k in JPEG_PACK_KEYS):
                train, test = (_decode_pack(arrays, split, path) for split in ("train", "test"))
            else:
                missing = [k for k in NPZ_KEYS if k not in arrays]
                if missing:
                    raise AutoaugError(f"{path}: missing arrays {', '.join(missing)} (expected "
                                       f"{', '.join(NPZ_KEYS)} and optionally class_names, or a JPEG pack: "
                                       f"{', '.join(JPEG_PACK_KEYS)})")
                train, test = (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])
            names = tuple(str(c) for c in arrays["class_names"]) if "class_names" in arrays else None
    except AutoaugError:
        raise
    except Exception as error:  # not a zip, object arrays (refused without pickle), truncated file
        raise AutoaugError(f"{path}: not a readable .npz file ({type(error).__name__}: {error})") from None
    return train, test, names


def _decode_pack(arrays: np.lib.npyio.NpzFile, split: str, path: Path) -> Split:
    """One split of a JPEG pack, decoded with Pillow (torchvision's decoders are deprecated)."""
    import io

    from PIL import Image, UnidentifiedImageError

    blob, offsets, labels = arrays[f"{split}_jpeg"], arrays[f"{split}_offsets"], arrays[f"y_{split}"]
    if offsets.ndim != 1 or len(offsets) != len(labels) + 1 or offsets[0] != 0 or offsets[-1] != len(blob) \
            or np.any(np.diff(offsets) <= 0):
        raise AutoaugError(f"{path}: {split}_offsets must rise from 0 to the length of {split}_jpeg, one more "
                           f"entry than y_{split} has labels")
    images = []
    for index, (start, end) in enumerate(zip(offsets[:-1], offsets[1:])):
        try:
            with Image.open(io.BytesIO(blob[start:end].tobytes())) as image:
                images.append(np.asarray(image.convert("RGB")))
        except (OSError, UnidentifiedImageError) as error:
            raise AutoaugError(f"{path}: {split} JPEG {index} cannot be decoded ({error})") from None
    if len({image.shape for image in images}) > 1:
        raise AutoaugError(f"{path}: the {split} images differ in size; all must share one")
    return np.stack(images), labels


def read_image_folder(root: Path) -> tuple[Split, Split | None, tuple[str, ...]]:
    """``train/<class>/*`` (and, where present, ``test/<class>/*``) images of one size, decoded to RGB.

    Classes are sorted by name.  The test split is None without a ``test/`` folder: a search never
    reads it, only ``evaluate`` needs it.
    """
    if not (root / "train").is_dir():
        raise AutoaugError(f"{root}: expected a subfolder train/<class>/ holding images (and test/<class>/ "
                           "for evaluate)")
    classes = tuple(sorted(p.name for p in (root / "train").iterdir() if p.is_dir()))
    has_test = (root / "test").is_dir()
    strays = sorted(p.name for p in (root / "test").iterdir() if p.is_dir() and p.name not in classes) \
        if has_test else []
    if strays:
        raise AutoaugError(f"{root / 'test'}: class folders {', '.join(strays)} have no match in {root / 'train'}")
    splits = [_read_split(root / split, classes) for split in (("train", "test") if has_test else ("train",))]
    _check_one_size(splits)
    train, *test = ((np.stack(arrays), labels) for _, arrays, labels in splits)
    return train, (test[0] if test else None), classes


def _read_split(folder: Path, classes: tuple[str, ...]) -> tuple[list[Path], list[np.ndarray], np.ndarray]:
    files = [file for name in classes if (folder / name).is_dir() for file in sorted((folder / name).iterdir())
             if file.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise AutoaugError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in the class folders "
                           f"{', '.join(classes) or '(none)'}")
    labels = np.asarray([classes.index(file.parent.name) for file in files], dtype=np.int64)
    return files, [_decode(file) for file in files], labels


def _check_one_size(splits: list[tuple[list[Path], list[np.ndarray], np.ndarray]]) -> None:
    """The model needs one input size; resizing silently would change what the policy search sees."""
    first_file, first = splits[0][0][0], splits[0][1][0].shape
    for files, arrays, _ in splits:
        for file, array in zip(files, arrays):
            if array.shape != first:
                raise AutoaugError(f"{file}: size {array.shape[1]}x{array.shape[0]} differs from the "
                                   f"{first[1]}x{first[0]} of {first_file}; all images must share one size "
                                   "(resize them first)")


def _decode(file: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(file) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError) as error:
        raise AutoaugError(f"{file}: cannot decode the image ({error})") from None

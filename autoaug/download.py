"""Fetching a named dataset's files with torchvision's downloader and checksums, all or nothing.

Files are downloaded, checked and unpacked in a temporary folder inside the target folder, and moved
into place only when every one has passed: a dropped connection or a corrupted archive leaves nothing
half-written behind for the next run to trip over.

``AUTOAUG_DATA_MIRROR`` (a base URL) fetches the same file names from a mirror instead; a mirror
publishes ``md5sums.txt`` (``md5sum`` output) and its checksums are the ones checked. The original
URLs are always checked against torchvision's own checksums.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from autoaug.errors import AutoaugError, Registry

MIRROR_ENV = "AUTOAUG_DATA_MIRROR"
CHECKSUMS = "md5sums.txt"


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch; an archive is unpacked into the target folder, other files are put there as is."""

    url: str
    filename: str
    md5: str
    archive: bool = False


@dataclass(frozen=True)
class Source:
    """Where a dataset's files come from, and the folder under data_dir they go to (torchvision's layout)."""

    files: tuple[RemoteFile, ...]
    subfolder: str = ""


# torchvision is imported inside these: `import autoaug` must stay fast, and most runs never download
def _cifar10() -> Source:
    from torchvision.datasets import CIFAR10

    return Source((RemoteFile(CIFAR10.url, CIFAR10.filename, CIFAR10.tgz_md5, archive=True),))


def _cifar100() -> Source:
    from torchvision.datasets import CIFAR100

    return Source((RemoteFile(CIFAR100.url, CIFAR100.filename, CIFAR100.tgz_md5, archive=True),))


def _svhn() -> Source:
    from torchvision.datasets import SVHN

    return Source(tuple(RemoteFile(*SVHN.split_list[split]) for split in ("train", "test")))


def _fashion_mnist() -> Source:
    from torchvision.datasets import FashionMNIST

    base = FashionMNIST.mirrors[0]
    files = tuple(RemoteFile(base + name, name, md5) for name, md5 in FashionMNIST.resources)
    return Source(files, subfolder="FashionMNIST/raw")


SOURCES: Registry = Registry("downloadable dataset")  # name -> a function giving its Source
SOURCES.add("cifar10", _cifar10)
SOURCES.add("cifar100", _cifar100)
SOURCES.add("fashion_mnist", _fashion_mnist)
SOURCES.add("svhn", _svhn)


def source(dataset: str, *, mirror: str | None = None) -> Source:
    """``dataset``'s files at their original URLs, or at ``mirror`` with the mirror's own checksums."""
    original: Source = SOURCES[dataset]()
    if not mirror:
        return original
    checksums = _mirror_checksums(mirror)
    files = []
    for file in original.files:
        if file.filename not in checksums:
            raise AutoaugError(f"{dataset}: the mirror {mirror} lists no checksum for {file.filename} in {CHECKSUMS}")
        files.append(replace(file, url=_join(mirror, file.filename), md5=checksums[file.filename]))
    return replace(original, files=tuple(files))


def download(dataset: str, data_dir: Path, *, mirror: str | None = None) -> Path:
    """Fetch ``dataset``'s files into ``data_dir`` (a mirror from ``AUTOAUG_DATA_MIRROR`` if not given).

    Returns the folder the files went to. Any failure is one ``AutoaugError`` line, and leaves
    ``data_dir`` as it was apart from, at most, the empty folders leading to it.
    """
    mirror = mirror if mirror is not None else os.environ.get(MIRROR_ENV) or None
    target = Path(data_dir).expanduser() / SOURCES[dataset]().subfolder
    new = _first_missing(target)
    try:
        remote = source(dataset, mirror=mirror)
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".autoaug-download-", dir=target) as staging:
            for file in remote.files:
                _fetch(file, Path(staging))
            _move_into(Path(staging) / "content", target)
    except Exception as error:  # no network, a full disk, a changed server: all one user-facing failure
        if new is not None:
            shutil.rmtree(new, ignore_errors=True)  # only folders this call created, still empty
        reason = str(error) if isinstance(error, AutoaugError) else f"{type(error).__name__}: {error}"
        raise AutoaugError(f"{dataset}: download into {target} failed: {' '.join(reason.split())}; "
                           "nothing was written") from None
    return target


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of ``path`` that does not exist yet (None if ``path`` exists)."""
    missing = None
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing = folder
    return missing


def _fetch(file: RemoteFile, staging: Path) -> None:
    """Download ``file`` into ``staging/files``, check it, and unpack or copy it to ``staging/content``."""
    from torchvision.datasets.utils import calculate_md5, download_url, extract_archive

    download_url(file.url, str(staging / "files"), file.filename)  # checked below, for a clearer message
    path = staging / "files" / file.filename
    found = calculate_md5(str(path))
    if found != file.md5:
        raise AutoaugError(f"{file.url} has MD5 {found}, expected {file.md5} (a corrupted or changed file)")
    content = staging / "content"
    content.mkdir(exist_ok=True)
    if not file.archive:
        path.replace(content / file.filename)
        return
    try:
        extract_archive(str(path), str(content))
    except Exception as error:  # tarfile, gzip and zipfile raise unrelated types for a damaged archive
        raise AutoaugError(f"{file.url} is not a readable archive ({type(error).__name__}: {error})") from None


def _move_into(content: Path, target: Path) -> None:
    """Every file under ``content`` to the same place under ``target`` (renames on one file system)."""
    for path in sorted(p for p in content.rglob("*") if p.is_file()):
        destination = target / path.relative_to(content)
        destination.parent.mkdir(parents=True, exist_ok=True)
        path.replace(destination)


def _join(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + name


def _mirror_checksums(mirror: str) -> dict[str, str]:
    """``md5sum`` lines (``<md5>  <name>``, ``*`` before binary names) of the mirror's checksum file."""
    import urllib.request

    url = _join(mirror, CHECKSUMS)
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            text = response.read().decode()
    except Exception as error:
        raise AutoaugError(f"cannot read the mirror's checksums {url} ({type(error).__name__}: {error})") from None
    pairs = (line.split(maxsplit=1) for line in text.splitlines() if line.strip())
    return {name.strip().lstrip("*"): md5.lower() for md5, name in pairs}


"""--download end to end, offline: small files in each dataset's real format, served on 127.0.0.1 as a mirror."""
from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import os
import shutil
import tarfile
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from autoaug.datasets import load_dataset
from autoaug.download import CHECKSUMS, MIRROR_ENV, SOURCES, download, source
from autoaug.errors import AutoaugError, UnknownNameError
from autoaug_cli import app as cli_app


def _test_datasets():
    """tests/test_datasets.py, for its writers of each format (the test folder is not a package)."""
    spec = importlib.util.spec_from_file_location("_dataset_writers", Path(__file__).with_name("test_datasets.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


WRITERS = _test_datasets()
ARCHIVES = {"cifar10": ("cifar-10-python.tar.gz", "cifar-10-batches-py"),
            "cifar100": ("cifar-100-python.tar.gz", "cifar-100-python")}


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def publish(name: str, folder: Path) -> tuple:
    """Write ``name``'s files as its original server holds them (archive, .mat or .gz) into ``folder``,
    with md5sums.txt; returns the arrays they hold."""
    source_dir = folder / "source"
    source_dir.mkdir(parents=True)
    expected = WRITERS.WRITERS[name](source_dir)
    if name in ARCHIVES:
        archive, inner = ARCHIVES[name]
        with tarfile.open(folder / archive, "w:gz") as tar:
            tar.add(source_dir / inner, arcname=inner)
    for path in source_dir.iterdir():
        if path.is_file():  # fashion_mnist is served gzipped; the test writer leaves the t10k files raw
            served = path.name if path.suffix in (".gz", ".mat") else path.name + ".gz"
            (folder / served).write_bytes(path.read_bytes() if served == path.name else gzip.compress(path.read_bytes()))
    shutil.rmtree(source_dir)
    _write_checksums(folder)
    return expected


def _write_checksums(folder: Path) -> None:
    lines = [f"{_md5(p)}  {p.name}" for p in sorted(folder.iterdir()) if p.name != CHECKSUMS]
    (folder / CHECKSUMS).write_text("\n".join(lines) + "\n")


class _Handler(SimpleHTTPRequestHandler):
    requests: list[str]

    def do_GET(self) -> None:
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args: object) -> None:  # keep the test output clean
        pass


@pytest.fixture
def mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, list[str]]]:
    """A folder served over HTTP on 127.0.0.1, set as AUTOAUG_DATA_MIRROR; yields it and the GET paths."""
    folder, requests = tmp_path / "mirror", []
    folder.mkdir()
    handler = type("Handler", (_Handler,), {"requests": requests})
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    monkeypatch.setenv(MIRROR_ENV, f"http://127.0.0.1:{server.server_address[1]}/")
    yield folder, requests
    server.shutdown()
    server.server_close()


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_download_fetches_checks_and_reads_every_dataset(name, mirror, tmp_path):
    folder, requests = mirror
    x_train, y_train, x_test, y_test, classes = publish(name, folder)
    data = load_dataset(name, data_dir=tmp_path / "data", download=True)
    assert data.train.images.numpy().tolist() == x_train.tolist()
    assert data.train.labels.tolist() == list(y_train) and data.test.labels.tolist() == list(y_test)
    assert data.test.images.shape[0] == len(x_test) and data.train.classes == classes
    assert not any(".autoaug-download" in f for f in _files(tmp_path / "data"))  # the staging folder is gone
    served = sorted(p.name for p in folder.iterdir() if p.name != CHECKSUMS)
    assert set(requests) == {"/" + CHECKSUMS} | {"/" + f for f in served}  # torchvision GETs twice (redirects)
    before = len(requests)
    load_dataset(name, data_dir=tmp_path / "data", download=True)
    assert len(requests) == before  # the files are there now: nothing is fetched again


def test_cifar10_lands_in_torchvisions_layout(mirror, tmp_path):
    publish("cifar10", mirror[0])
    assert download("cifar10", tmp_path / "data") == tmp_path / "data"
    names = [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch", "batches.meta"]
    assert _files(tmp_path / "data") == ["cifar-10-batches-py"] + [f"cifar-10-batches-py/{n}" for n in sorted(names)]


def test_a_corrupted_archive_is_one_line_and_leaves_nothing(mirror, tmp_path):
    folder, _ = mirror
    publish("cifar10", folder)
    archive = folder / "cifar-10-python.tar.gz"
    good = _md5(archive)
    archive.write_bytes(archive.read_bytes()[:-100])  # truncated in transit; md5sums.txt keeps the true md5
    with pytest.raises(AutoaugError) as error:
        load_dataset("cifar10", data_dir=tmp_path / "new" / "data", download=True)
    message = str(error.value)
    assert message.startswith(f"cifar10: download into {tmp_path / 'new' / 'data'} failed: http://127.0.0.1:")
    assert f"cifar-10-python.tar.gz has MD5 {_md5(archive)}, expected {good} (a corrupted or changed file)" in message
    assert message.endswith("; nothing was written") and "\n" not in message
    assert not (tmp_path / "new").exists()  # the folders made for the download are gone too


def test_an_archive_that_does_not_unpack_leaves_the_folder_as_it_was(mirror, tmp_path):
    folder, _ = mirror
    publish("cifar100", folder)
    (folder / "cifar-100-python.tar.gz").write_bytes(b"\x1f\x8b" + b"not gzip" * 50)
    _write_checksums(folder)  # the checksum matches: the archive itself is broken
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("mine")
    with pytest.raises(AutoaugError, match=r"cifar-100-python.tar.gz is not a readable archive \(") as error:
        load_dataset("cifar100", data_dir=tmp_path / "data", download=True)
    assert "\n" not in str(error.value)
    assert _files(tmp_path / "data") == ["notes.txt"]


def test_a_half_fetched_set_moves_nothing_into_place(mirror, tmp_path):
    """svhn is two files: the first arrives and checks out, the second is missing on the server."""
    folder, _ = mirror
    publish("svhn", folder)
    (folder / "test_32x32.mat").unlink()
    (tmp_path / "data").mkdir()
    with pytest.raises(AutoaugError, match=r"^svhn: download into .* failed: HTTPError: HTTP Error 404"):
        load_dataset("svhn", data_dir=tmp_path / "data", download=True)
    assert _files(tmp_path / "data") == []


def test_no_server_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv(MIRROR_ENV, "http://127.0.0.1:9/")  # the discard port: nothing listens
    with pytest.raises(AutoaugError, match=r"^svhn: download into .* failed: cannot read the mirror's checksums "
                                           r"http://127.0.0.1:9/md5sums.txt \(URLError") as error:
        load_dataset("svhn", data_dir=tmp_path / "data", download=True)
    assert "\n" not in str(error.value) and not (tmp_path / "data").exists()


def test_the_original_urls_keep_torchvisions_checksums(mirror):
    from torchvision.datasets import CIFAR10, SVHN, FashionMNIST

    assert source("cifar10").files[0].url == CIFAR10.url == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert source("cifar10").files[0].md5 == CIFAR10.tgz_md5 == "c58f30108f718f92721af3b95e74349a"
    assert [(f.url, f.filename, f.md5) for f in source("svhn").files] == [tuple(SVHN.split_list[s]) for s in ("train", "test")]
    assert [(f.filename, f.md5) for f in source("fashion_mnist").files] == list(FashionMNIST.resources)
    folder, _ = mirror
    publish("cifar10", folder)
    (folder / CHECKSUMS).write_text(f"{'0' * 32} *cifar-10-python.tar.gz\n")  # md5sum's binary-mode mark
    base = os.environ[MIRROR_ENV]
    mirrored = source("cifar10", mirror=base).files[0]
    assert (mirrored.url, mirrored.md5) == (base + "cifar-10-python.tar.gz", "0" * 32)


def test_a_mirror_without_a_files_checksum_is_refused(mirror, tmp_path):
    folder, _ = mirror
    publish("cifar10", folder)
    (folder / CHECKSUMS).write_text("")
    with pytest.raises(AutoaugError, match=r"the mirror http://127.0.0.1:\d+/ lists no checksum for "
                                           r"cifar-10-python.tar.gz in md5sums.txt; nothing was written"):
        download("cifar10", tmp_path)
    with pytest.raises(UnknownNameError, match="known: cifar10, cifar100, fashion_mnist, svhn"):
        download("digits", tmp_path)


def test_evaluate_downloads_then_trains(mirror, tmp_path, capsys):
    publish("cifar10", mirror[0])
    with pytest.raises(SystemExit) as done:
        cli_app.main(["evaluate", "cropflip", "--dataset", "cifar10", "--data-dir", str(tmp_path / "data"),
                      "--download", "--model", "proxy_tiny", "--epochs", "1", "--device", "cpu",
                      "--out", str(tmp_path / "out"), "--lr", "0.8"])
    assert done.value.code == 0
    assert "cropflip" in capsys.readouterr().out
    assert (tmp_path / "data" / "cifar-10-batches-py" / "test_batch").is_file()
    record = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    # 100 training images -> batch 32; --lr 0.8 is per 512 images -> 0.8 * 32 / 512
    assert record["learning_rate"]["batch_size"] == 32 and record["learning_rate"]["peak_lr"] == pytest.approx(0.05)


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as done:
        cli_app.main(argv)
    assert done.value.code == cli_app.USER_ERROR
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]  # the progress bar may
    assert len(lines) == 1                                                              # leave a blank line
    return lines[0]


def test_missing_data_names_the_exact_evaluate_command(tmp_path, capsys):
    err = _error(["evaluate", "cropflip", "randaugment", "--dataset", "cifar100", "--epochs", "3",
                  "--data-dir", str(tmp_path)], capsys)
    assert err == (f"error: cifar100: expected the files train, test, meta in {tmp_path / 'cifar-100-python'} "
                   "(no such folder); to download it (needs a network) and run: autoaug evaluate cropflip "
                   f"randaugment --dataset cifar100 --epochs 3 --data-dir {tmp_path} --download")


def test_missing_data_without_data_dir_suggests_one(capsys):
    err = _error(["evaluate", "cropflip", "--dataset", "svhn", "--no-download"], capsys)
    assert err == ("error: svhn: no --data-dir given to find its files (train_32x32.mat, test_32x32.mat) in; to "
                   "download it (needs a network) and run: autoaug evaluate cropflip --dataset svhn --data-dir data "
                   "--download")


def test_missing_data_names_the_exact_search_command(tmp_path, capsys):
    err = _error(["search", "--dataset", "cifar10", "--budget", "30s", "--data-dir", str(tmp_path / "d"),
                  "--out", str(tmp_path / "run")], capsys)
    assert err.endswith(f"; to download it (needs a network) and run: autoaug search --dataset cifar10 --budget 30s "
                        f"--out {tmp_path / 'run'} --data-dir {tmp_path / 'd'} --download")

"""Shared pytest options: slow tests are opt-in with --runslow, device tests with --device cuda."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def cifar10_mini() -> Path:
    """1,000 train and 200 test photos of CIFAR-10 (100 and 20 a class, a seeded pick) as a JPEG pack: the
    files of the copy in ../shared/data (see its SOURCES.md), so that every machine tests on real photos."""
    return Path(__file__).parent / "data" / "cifar10-mini.npz"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")
    parser.addoption("--browser", action="store_true", default=False,
                     help="also run tests marked browser (report.html in headless Chromium)")
    parser.addoption("--device", default="cpu", help="device of the device tests (tests/test_device.py), e.g. cuda")


@pytest.fixture(scope="session")
def device(request: pytest.FixtureRequest) -> torch.device:
    """The device named by --device; tests that compare it with the CPU skip when it is the CPU."""
    chosen = torch.device(request.config.getoption("--device"))
    if chosen.type == "cuda" and not torch.cuda.is_available():
        pytest.skip("--device cuda: no CUDA device here")
    return chosen


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--browser"):
        for item in items:
            if "browser" in item.keywords:
                item.add_marker(pytest.mark.skip(reason="browser: run with --browser"))
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """For thousands of per-image torchvision calls on tiny tensors: handing each to a second thread costs
    more than the work (28 ms instead of 0.15 ms per 32x32 affine on a busy 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def fresh_range_tables() -> None:
    """Each test builds the sampler's cached magnitude tables, and the per-image path's kept tables and
    maps, anew, so that a test never relies on tables another test built (and mutation testing, which
    forks after a clean run, sees its mutant act)."""
    from autoaug import perimage
    from autoaug.sampling import range_table
    range_table.cache_clear()
    perimage._KEPT.clear()
    perimage._STRETCH.clear()

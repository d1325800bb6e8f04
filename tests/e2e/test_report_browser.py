"""report.html of a real search, rendered in headless Chromium: not blank, and every image loaded.

Opt-in: ``pytest --browser`` (needs Debian's ``chromium``, or AUTOAUG_CHROMIUM=/path/to/chrome).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import PIL.Image
import PIL.ImageStat
import pytest

pytestmark = pytest.mark.browser
SEARCH = ["--dataset", "digits", "--model", "proxy_tiny", "--budget", "6", "--epochs", "3", "--train-size", "300",
          "--val-size", "100", "--batch-size", "64", "--top-k", "2", "--top-k-epochs", "2", "--seed", "0"]
CHECK_IMAGES = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const loaded = images.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.setAttribute("data-images", loaded + "/" + images.length);
});
</script></body>"""


def _chromium() -> str:
    found = os.environ.get("AUTOAUG_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip("no chromium (apt-get install -y chromium, or set AUTOAUG_CHROMIUM)")
    return found


def _headless(*args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
             "--hide-scrollbars", "--virtual-time-budget=5000"]
    return subprocess.run([_chromium(), *flags, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="session")
def searched(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real, small `autoaug search`; it writes report.html at its end."""
    out = tmp_path_factory.mktemp("search") / "run"
    done = subprocess.run([sys.executable, "-m", "autoaug_cli", "search", *SEARCH, "--out", str(out), "--json"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    return out


def test_report_of_a_real_search_renders_with_every_image(searched: Path, tmp_path: Path) -> None:
    report = searched / "report.html"
    html = report.read_text()
    assert html.count("data:image/png;base64,") == 6  # every plot: the search had enough trials for all
    probe = tmp_path / "probe.html"  # the same page with a script that counts the images that loaded
    probe.write_text(html.replace("</body>", CHECK_IMAGES))
    dom = _headless("--dump-dom", probe.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert re.search(r'data-images="6/6"', dom.stdout), "every embedded image decoded and loaded"
    shot = tmp_path / "shot.png"
    done = _headless(f"--screenshot={shot}", "--window-size=1100,3000", report.as_uri())
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    image = PIL.Image.open(shot).convert("L")
    assert PIL.ImageStat.Stat(image).stddev[0] > 20, "the screenshot is not blank"
    dark = sum(image.histogram()[:128]) / (image.width * image.height)
    assert dark > 0.01, "text and plots drew dark pixels"

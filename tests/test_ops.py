"""Every op against torchvision.transforms.v2.functional, image by image, on real photos and digits."""
from __future__ import annotations

import functools
import math
import zlib

import numpy as np
import pytest
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from autoaug.errors import Registry, UnknownNameError
from autoaug.grid import digits_images
from autoaug.ops import AUX_DRAWS, OPS, RANGE_SETS, op_names, register

NEAREST = InterpolationMode.NEAREST
# Share of pixels allowed to differ by one grey level.  Measured over 40 seeds x 4 image sets x 24 images
# after the _blend/_grayscale rounding fix: every op 0.0 (Color was 0.34% before the fix, when
# our blend did not fuse its multiply-add as torchvision's add_(alpha=) does).  The max-difference bound
# of 1 stays, as torchvision's own CPU and GPU kernels may round 1-off against each other.
MAX_DIFFERING_SHARE = 0.0
# ops with random positions: compared with torchvision's RandomCrop/RandomErasing (and the Cutout paper's
# code) at the end of this file, by replaying their draws or by distribution, not with our own helpers
OWN_TESTS = ("RandomCrop", "Cutout", "RandomErasing")
REPLAYED = [name for name in OPS if name not in OWN_TESTS]


pytestmark = pytest.mark.usefixtures("one_thread")  # thousands of per-image torchvision calls


@functools.lru_cache(maxsize=None)
def _sample_images() -> tuple[torch.Tensor, ...]:
    from sklearn.datasets import load_sample_images
    return tuple(torch.from_numpy(np.array(p)).permute(2, 0, 1) for p in load_sample_images().images)


def photos(height: int, width: int, n: int = 24) -> torch.Tensor:
    """Real photo crops (scikit-learn's china and flower), downscaled: interpolation bugs show on real edges."""
    sources = _sample_images()
    crops = [sources[i % 2][:, 13 * i: 13 * i + 200, 23 * i: 23 * i + 260] for i in range(n)]
    return torch.stack([F.resize(c, [height, width], antialias=True) for c in crops])


def coloured_digits(n: int = 24) -> torch.Tensor:
    """Real 8x8 digit scans at 32x32, tinted differently per channel so colour ops have colour to work on."""
    grey = digits_images(n).to(torch.float32)
    tint = torch.tensor([1.0, 0.6, 0.3]).view(1, 3, 1, 1)
    offset = torch.tensor([0.0, 40.0, 90.0]).view(1, 3, 1, 1)
    return (grey * tint + offset).clamp(0, 255).round().to(torch.uint8)


IMAGE_SETS = {
    "photo32": lambda: photos(32, 32),
    "photo48x64": lambda: photos(48, 64),
    "digits32": coloured_digits,
    "grey32": lambda: digits_images(24),
}


def reference(name: str, image: torch.Tensor, v: float, aux: torch.Tensor) -> torch.Tensor:
    """torchvision's functional API on one image with the same native parameter."""
    h, w = image.shape[-2:]
    one = torch.tensor([v])
    if name in ("ShearX", "ShearY"):
        shear = [math.degrees(math.atan(v)), 0.0] if name == "ShearX" else [0.0, math.degrees(math.atan(v))]
        return F.affine(image, angle=0.0, translate=[0, 0], scale=1.0, shear=shear, interpolation=NEAREST,
                        fill=None, center=[0, 0])
    if name in ("TranslateX", "TranslateY"):
        shift = [int(v), 0] if name == "TranslateX" else [0, int(v)]
        return F.affine(image, angle=0.0, translate=shift, scale=1.0, shear=[0.0, 0.0], interpolation=NEAREST,
                        fill=None)
    if name in OWN_TESTS:
        raise AssertionError(f"{name} is compared with torchvision's own transform below, not replayed here")
    table = {
        "Identity": lambda: image, "Rotate": lambda: F.rotate(image, v, interpolation=NEAREST),
        "Brightness": lambda: F.adjust_brightness(image, 1 + v), "Color": lambda: F.adjust_saturation(image, 1 + v),
        "Contrast": lambda: F.adjust_contrast(image, 1 + v), "Sharpness": lambda: F.adjust_sharpness(image, 1 + v),
        "Posterize": lambda: F.posterize(image, 8 - round(v)), "Solarize": lambda: F.solarize(image, 255 * v),
        "AutoContrast": lambda: F.autocontrast(image), "Equalize": lambda: F.equalize(image),
        "Invert": lambda: F.invert(image), "HorizontalFlip": lambda: F.horizontal_flip(image)}
    return table[name]()


def native_values(name: str, n: int, gen: torch.Generator, height: int, width: int) -> torch.Tensor:
    """Per-image values over the op's whole range: both range sets, both signs, the ends included."""
    spec = OPS[name]
    draws = []
    for k in range(n):
        r = spec.native_range(RANGE_SETS[k % 2])
        u = (0.0, 1.0)[k // 2] if k < 4 else torch.rand((), generator=gen).item()
        value = (r.low + (r.high - r.low) * u) * r.scale(height, width)
        draws.append(-value if spec.signed and k % 4 in (1, 2) else value)
    return torch.tensor(draws)


def compare(name: str, images: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Our batched kernel and torchvision image by image, with the same per-image parameters."""
    gen = torch.Generator().manual_seed(seed)
    height, width = images.shape[-2:]
    values = native_values(name, len(images), gen, height, width)
    aux = torch.rand(len(images), AUX_DRAWS, generator=gen)
    before = images.clone()
    ours = OPS[name].kernel(images, values, aux)
    assert torch.equal(images, before), "kernels are pure: the input batch must not change"
    expected = torch.stack([reference(name, images[i], float(values[i]), aux[i]) for i in range(len(images))])
    return ours, expected


@pytest.fixture(scope="module", params=list(IMAGE_SETS))
def image_set(request: pytest.FixtureRequest) -> torch.Tensor:
    return IMAGE_SETS[request.param]()


@pytest.mark.parametrize("name", REPLAYED)
def test_op_matches_torchvision_per_image(name: str, image_set: torch.Tensor) -> None:
    ours, expected = compare(name, image_set, seed=zlib.crc32(name.encode()))
    assert ours.dtype == torch.uint8 and ours.shape == image_set.shape
    assert (ours.int() - expected.int()).abs().max().item() <= 1
    assert (ours != expected).float().mean().item() <= MAX_DIFFERING_SHARE


def ramp(height: int, width: int) -> torch.Tensor:
    """Every grey level in every channel: a threshold or rounding edge cannot be missed."""
    levels = torch.arange(height * width).view(1, 1, height, width) + torch.tensor([0, 85, 170]).view(1, 3, 1, 1)
    return (levels % 256).to(torch.uint8)


@pytest.mark.parametrize("height, width", [(32, 32), (48, 64)], ids=["32x32", "48x64"])
@pytest.mark.parametrize("name", REPLAYED)
def test_op_matches_torchvision_at_bin_values(name: str, height: int, width: int) -> None:
    """The values policies really use, the bins of 10 and 31, land products and thresholds exactly on
    integers: float32 atan, an unfused blend and a float64 Solarize threshold each differed here."""
    spec = OPS[name]
    values = sorted({sign * (r.low + (r.high - r.low) * b / (bins - 1)) * r.scale(height, width)
                     for r in (spec.standard, spec.wide) for bins in (10, 31) for b in range(bins)
                     for sign in ((1, -1) if spec.signed else (1,))})
    images = torch.cat([ramp(height, width), photos(height, width)])
    images = images[torch.arange(len(values)) % len(images)]
    values = torch.tensor(values, dtype=torch.float32)
    aux = torch.rand(len(values), AUX_DRAWS, generator=torch.Generator().manual_seed(0))
    ours = spec.kernel(images, values, aux)
    expected = torch.stack([reference(name, images[i], float(values[i]), aux[i]) for i in range(len(values))])
    assert torch.equal(ours, expected)


def test_colour_ops_agree_on_every_rgb_colour() -> None:
    """All 2**24 colours in one 4096x4096 image: luma as separate products floored 21 colours differently."""
    code = torch.arange(2**24, dtype=torch.int32)
    image = torch.stack([(code >> 16) & 255, (code >> 8) & 255, code & 255]).to(torch.uint8).view(1, 3, 4096, 4096)
    ours = OPS["Color"].kernel(image, torch.tensor([-1.0]), torch.zeros(1, AUX_DRAWS))  # saturation 0: the luma itself
    assert torch.equal(ours[0], F.adjust_saturation(image[0], 0.0))


@pytest.mark.parametrize("name", [n for n in op_names() if n != "Identity"])
def test_op_changes_real_images_at_full_strength(name: str) -> None:
    """Guards against a kernel that silently does nothing (the reference test would pass if both did)."""
    images = photos(32, 32, n=4)
    spec = OPS[name]
    value = torch.full((4,), spec.standard.high * spec.standard.scale(32, 32))
    aux = torch.tensor([[0.5, 0.5], [0.1, 0.9], [0.9, 0.1], [0.3, 0.7]]).repeat(1, AUX_DRAWS // 2)
    out = spec.kernel(images, value, aux)
    changed = (out != images).flatten(1).any(1)
    # RandomCrop draws a zero offset for some aux; every other op changes every one of these photos
    assert changed.sum().item() >= (2 if name == "RandomCrop" else 4)


def test_every_image_gets_its_own_value() -> None:
    image = photos(32, 32, n=1)
    out = OPS["Rotate"].kernel(image.expand(4, -1, -1, -1), torch.tensor([0.0, 10.0, -10.0, 30.0]),
                               torch.zeros(4, AUX_DRAWS))
    assert torch.equal(out[0], image[0])
    for i, degrees in enumerate([10.0, -10.0, 30.0], start=1):
        assert torch.equal(out[i], F.rotate(image[0], degrees, interpolation=NEAREST))


def test_negative_values_act_the_other_way() -> None:
    """A negative TranslateX moves the image left by the same pixels; ops with no direction have no sign."""
    images = photos(32, 32, n=2)
    right = OPS["TranslateX"].kernel(images, torch.tensor([5.0, 5.0]), torch.zeros(2, AUX_DRAWS))
    left = OPS["TranslateX"].kernel(images, torch.tensor([-5.0, -5.0]), torch.zeros(2, AUX_DRAWS))
    assert torch.equal(right[..., 5:], images[..., :-5]) and (right[..., :5] == 0).all()
    assert torch.equal(left[..., :-5], images[..., 5:]) and (left[..., -5:] == 0).all()
    assert not any(OPS[n].signed for n in ("Posterize", "Solarize", "AutoContrast", "Equalize", "Invert",
                                              "HorizontalFlip", "RandomCrop", "Cutout", "RandomErasing"))


def test_registry_refuses_duplicates() -> None:
    registry = Registry("op")
    registry.add("Rotate", object())
    with pytest.raises(ValueError, match="duplicate op 'Rotate'"):
        registry.add("Rotate", object())
    before = dict(OPS)
    with pytest.raises(ValueError, match="duplicate op 'Rotate'"):
        register("Rotate")(lambda images, value, aux: images)
    assert OPS == before  # the real registry is untouched by the refused entry


def test_unknown_op_names_the_known_ones() -> None:
    with pytest.raises(UnknownNameError) as error:
        OPS["Rotat"]
    message = str(error.value)
    assert "unknown op 'Rotat'" in message and "did you mean 'Rotate'" in message
    assert all(name in message for name in op_names()) and "\n" not in message
    with pytest.raises(KeyError):  # still a KeyError for code that catches lookups generically
        OPS["zzz"]
    assert "did you mean" not in str(UnknownNameError("op", "zzz", OPS))


def test_native_ranges_are_well_formed() -> None:
    for name in op_names():
        spec = OPS[name]
        assert spec.name == name
        for range_set in RANGE_SETS:
            r = spec.native_range(range_set)
            assert r.unit and math.isfinite(r.low) and math.isfinite(r.high)
            # magnitude 0 is the weakest setting: the signed ops are the identity there
            assert not spec.signed or r.low == 0.0
    assert OPS["TranslateX"].standard.scale(48, 64) == 64 and OPS["TranslateY"].standard.scale(48, 64) == 48
    assert OPS["TranslateX"].wide.scale(48, 64) == 1.0  # wide translations are in pixels, as torchvision's 32


# --------------------------------------------------------------------------- crop and erasing vs torchvision
KS_999 = 1.95  # two-sample Kolmogorov-Smirnov critical value at p = 0.001 is 1.95 * sqrt(2 / n)


def _ks(a: torch.Tensor, b: torch.Tensor) -> float:
    """Two-sample Kolmogorov-Smirnov statistic of two equally long samples."""
    values = torch.cat([a, b]).unique()
    cdf = lambda x: (x[:, None] <= values[None, :]).double().mean(0)  # noqa: E731
    return float((cdf(a) - cdf(b)).abs().max())


def _holes(out: torch.Tensor) -> torch.Tensor:
    """(top, left, height, width) of the zeroed box in each white image, all 0 where there is none."""
    hole = (out[:, 0] == 0)
    rows, cols = hole.any(2), hole.any(1)
    first = lambda m: torch.where(m.any(1), m.long().argmax(1), 0)  # noqa: E731
    return torch.stack([first(rows), first(cols), rows.sum(1), cols.sum(1)], 1)


@pytest.mark.parametrize("height, width, padding", [(32, 32, 4), (48, 64, 6)])
def test_random_crop_replays_torchvision_random_crop(height: int, width: int, padding: int) -> None:
    """torchvision's RandomCrop(padding=p) draws a top-left corner; ours, handed that corner, gives its pixels;
    and our own offsets are uniform over the same (2p + 1) ** 2 corners."""
    from torchvision.transforms.v2 import RandomCrop
    images = photos(height, width, n=12)
    value = torch.full((1,), padding / height)
    assert round(padding / height * width) == padding * width // height  # the same padding along x
    pad_x = padding * width // height
    crop = RandomCrop((height, width), padding=[pad_x, padding])
    with torch.random.fork_rng():  # torchvision draws from the global generator: leave it as other tests find it
        torch.manual_seed(0)
        draws = [(crop.make_params if hasattr(crop, "make_params") else crop._get_params)([image])  # < 0.21: private
                 for image in images]
    apply = crop.transform if hasattr(crop, "make_params") else crop._transform
    for image, params in zip(images, draws):
        aux = torch.zeros(1, AUX_DRAWS)
        aux[0, :2] = torch.tensor([(params["top"] + 0.5) / (2 * padding + 1), (params["left"] + 0.5) / (2 * pad_x + 1)])
        assert torch.equal(OPS["RandomCrop"].kernel(image[None], value, aux)[0], apply(image, params))
    # our corners from uniform draws: every one of the (2p + 1) ** 2, evenly (chi-square at about p = 0.001)
    n = 20000
    rows = torch.arange(1, height + 1, dtype=torch.uint8).view(height, 1).expand(height, width)
    cols = torch.arange(1, width + 1, dtype=torch.uint8).view(1, width).expand(height, width)
    coded = torch.stack([rows, cols])[None].expand(n, -1, -1, -1)  # each pixel holds its own (row, column)
    out = OPS["RandomCrop"].kernel(coded, value.expand(n), torch.rand(n, AUX_DRAWS, generator=torch.Generator().manual_seed(1)))
    dy = out[:, 0, height // 2, width // 2].long() - 1 - height // 2 + padding  # the centre is never padding
    dx = out[:, 1, height // 2, width // 2].long() - 1 - width // 2 + pad_x
    cells = (2 * padding + 1) * (2 * pad_x + 1)
    counts = torch.bincount(dy * (2 * pad_x + 1) + dx, minlength=cells)
    expected = n / cells
    chi2 = float(((counts.double() - expected) ** 2 / expected).sum())
    assert len(counts) == cells and chi2 < cells - 1 + 4.5 * math.sqrt(2 * (cells - 1))


def _devries_cutout(image: torch.Tensor, length: int, y: int, x: int) -> torch.Tensor:
    """Cutout as DeVries & Taylor's code (github.com/uoguelph-mlrg/Cutout): a square of side ``length``
    centred at (y, x), clipped to the image, zeroed with torchvision's F.erase."""
    h, w = image.shape[-2:]
    y1, y2 = max(0, y - length // 2), min(h, y + length // 2)
    x1, x2 = max(0, x - length // 2), min(w, x + length // 2)
    return F.erase(image, y1, x1, y2 - y1, x2 - x1, v=torch.tensor(0, dtype=torch.uint8))


def test_cutout_replays_the_papers_cutout() -> None:
    """Given the paper's centre, the same pixels; and our centres are uniform over the image's pixels."""
    images = photos(32, 32, n=8)
    rng = np.random.default_rng(0)
    for side in (16, 8, 12):
        for image in images:
            y, x = int(rng.integers(32)), int(rng.integers(32))
            aux = torch.zeros(1, AUX_DRAWS)
            aux[0, :2] = torch.tensor([(y + 0.5) / 32, (x + 0.5) / 32])
            ours = OPS["Cutout"].kernel(image[None], torch.tensor([side / 32]), aux)[0]
            assert torch.equal(ours, _devries_cutout(image, side, y, x)), (side, y, x)
    n = 32 * 32 * 40
    white = torch.full((n, 1, 32, 32), 255, dtype=torch.uint8)
    out = OPS["Cutout"].kernel(white, torch.full((n,), 2 / 32), torch.rand(n, AUX_DRAWS, generator=torch.Generator().manual_seed(2)))
    holes = _holes(out)  # a 2x2 hole starts one pixel above and left of its centre: clipped at 0
    centre = (holes[:, 0] + holes[:, 2] - 1) * 32 + holes[:, 1] + holes[:, 3] - 1
    counts = torch.bincount(centre, minlength=32 * 32)
    chi2 = float(((counts.double() - 40) ** 2 / 40).sum())
    assert len(counts) == 1024 and chi2 < 1023 + 4.5 * math.sqrt(2 * 1023)


@pytest.mark.parametrize("height, width, max_area", [(32, 32, 0.4), (32, 32, 1.0), (16, 48, 0.4), (3, 64, 1.0)])
def test_random_erasing_is_distributed_as_torchvision(height: int, width: int, max_area: float) -> None:
    """Box position, size and the share of images left whole (no box fits in 10 tries), against
    torchvision's RandomErasing(scale=(0.02, max_area), value=0) measured from pixels in the same way."""
    from torchvision.transforms.v2 import RandomErasing
    n = 4000
    white = torch.full((n, 1, height, width), 255, dtype=torch.uint8)
    aux = torch.rand(n, AUX_DRAWS, generator=torch.Generator().manual_seed(3))
    ours = _holes(OPS["RandomErasing"].kernel(white, torch.full((n,), max_area), aux))
    erase = RandomErasing(p=1.0, scale=(0.02, max_area), ratio=(0.3, 3.3), value=0)
    with torch.random.fork_rng():
        torch.manual_seed(3)
        theirs = _holes(torch.stack([erase(image) for image in white]))
    whole_ours, whole_theirs = (ours[:, 2] == 0).double().mean(), (theirs[:, 2] == 0).double().mean()
    share = (whole_ours + whole_theirs) / 2
    assert abs(whole_ours - whole_theirs) <= 4.5 * math.sqrt(2 * share * (1 - share) / n) + 1e-9
    if height == 3:  # most boxes do not fit in 3 rows: redrawn, and often left out altogether, never clamped
        assert whole_ours > 0.1 and (ours[:, 2] < 3).all()
    for k in range(4):  # top, left, height, width
        assert _ks(ours[:, k], theirs[:, k]) < KS_999 * math.sqrt(2 / n), k
    assert _ks(ours[:, 2] * ours[:, 3], theirs[:, 2] * theirs[:, 3]) < KS_999 * math.sqrt(2 / n)

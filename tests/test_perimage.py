"""The per-image path's numpy forms of the ops give the batch kernels' pixels in every case."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as F

from autoaug import perimage
from autoaug.augment import DRAW_AHEAD, BatchAugment, PolicyTransform
from autoaug.grid import digits_images
from autoaug import ops
from autoaug.ops import OPS
from autoaug.policy import OpCall, Policy, TrivialAugment
from autoaug.sampling import apply_plan
from tests.test_augment import photos


def test_autocontrast_in_numpy_equals_the_kernel_for_every_low_high_pair() -> None:
    """Each channel of one image holds the 256 levels clipped to one (low, high) pair: all 32,896 pairs."""
    low, high = torch.triu_indices(256, 256)
    levels = torch.arange(256)
    channels = levels.clamp(low[:, None], high[:, None]).to(torch.uint8)  # spans exactly [low, high]
    image = channels[:, None, :]  # [pairs, 1, 256]
    expected = OPS["AutoContrast"].kernel(image[None], torch.zeros(1), torch.zeros(1, 0))[0]
    tables = perimage.stretch_tables(low.numpy(), high.numpy())
    assert tables.dtype == np.uint8
    assert np.array_equal(np.take_along_axis(tables, channels.long().numpy(), axis=1), expected[:, 0].numpy())
    out = perimage._autocontrast(image.numpy(), None)
    assert out.dtype == np.uint8 and np.array_equal(out, expected.numpy())


def _equalize_cases() -> list[torch.Tensor]:
    rng = torch.Generator().manual_seed(0)
    constant = torch.full((3, 8, 8), 77, dtype=torch.uint8)
    two_levels = torch.where(torch.rand(1, 16, 16, generator=rng) < 0.5, 3, 250).to(torch.uint8)
    one_off = torch.full((1, 16, 16), 200, dtype=torch.uint8)
    one_off[0, 0, 0] = 10
    few = torch.randint(0, 4, (2, 20, 30), generator=rng, dtype=torch.uint8) * 60  # step 0 < 255 pixels
    digits = digits_images(64)  # grey, few levels, many zeros
    return [*photos(16, 32, 32), *photos(4, 24, 40), *digits, constant, two_levels, one_off, few]


def test_equalize_in_numpy_equals_torchvision() -> None:
    for image in _equalize_cases():
        out = perimage._equalize(image.numpy(), None)
        assert out.dtype == np.uint8 and np.array_equal(out, F.equalize(image).numpy())


@pytest.mark.parametrize("channels", [1, 3])
def test_every_op_after_a_flip_and_before_a_crop_and_erasing_equals_the_batch_path(channels: int) -> None:
    """Ops compose on numpy views (a flipped view goes into the torch kernels); grey images too."""
    policy = Policy(name="every-op", pre=[OpCall(op="HorizontalFlip", probability=0.5)],
                    augment=TrivialAugment(ops=list(OPS), ranges="wide"),
                    post=[OpCall(op="RandomCrop", probability=1.0, magnitude=0.5),
                          OpCall(op="RandomErasing", probability=0.5, magnitude=0.8),
                          OpCall(op="Cutout", probability=0.5, magnitude=0.6)])
    transform, batch = PolicyTransform(policy, seed=5), BatchAugment(policy, seed=5)
    images = photos(DRAW_AHEAD, 20, 36)[:, :channels]
    out = torch.stack([transform(image) for image in images])
    assert torch.equal(out, apply_plan(images, batch.sample(DRAW_AHEAD, 20, 36)))


def test_kept_parameters_give_the_same_pixels_when_reused_and_when_dropped(monkeypatch) -> None:
    """Point tables and warp maps are kept per (op, value, size): reused, or dropped when there are too many."""
    policy = Policy(name="bins", augment=TrivialAugment(ops=["Rotate", "ShearX", "Solarize", "Posterize"]))
    images = photos(3 * DRAW_AHEAD, 16, 16)
    expected = BatchAugment(policy, seed=2)
    blocks = [apply_plan(images[k * DRAW_AHEAD:(k + 1) * DRAW_AHEAD], expected.sample(DRAW_AHEAD, 16, 16))
              for k in range(3)]
    for most in (8192, 3):
        monkeypatch.setattr(perimage, "_KEPT_MOST", most)
        perimage._KEPT.clear()
        transform = PolicyTransform(policy, seed=2)
        assert torch.equal(torch.stack([transform(image) for image in images]), torch.cat(blocks))
        assert 0 < len(perimage._KEPT) <= most + DRAW_AHEAD


def test_luma_in_numpy_equals_the_kernel_for_every_colour() -> None:
    """All 2**24 colours, one red level at a time (float64 sums standing in for fused multiply-adds)."""
    levels = torch.arange(256, dtype=torch.uint8)
    green, blue = levels.view(256, 1).expand(256, 256), levels.view(1, 256).expand(256, 256)
    for red in range(256):
        image = torch.stack([torch.full((256, 256), red, dtype=torch.uint8), green, blue])
        expected = ops._grayscale(image[None])[0, 0]
        assert np.array_equal(perimage.luma(image.numpy()), expected.numpy()), f"red {red}"


def test_integer_smoothing_equals_the_kernels_rounded_convolution_in_every_case() -> None:
    """Every (sum of the 8 neighbours, centre) pair as a 3x3 patch; at value -1 Sharpness returns the smoothing."""
    total, centre = torch.meshgrid(torch.arange(8 * 255 + 1), torch.arange(256), indexing="ij")
    total, centre = total.flatten(), centre.flatten()
    neighbours = total[:, None] // 8 + (torch.arange(8) < total[:, None] % 8)  # 8 values <= 255 summing to total
    patches = torch.cat([neighbours[:, :4], centre[:, None], neighbours[:, 4:]], dim=1).to(torch.uint8).view(-1, 3, 3)
    kernel = OPS["Sharpness"].kernel(patches[:, None], torch.full((len(patches),), -1.0), torch.zeros(len(patches), 0))
    assert np.array_equal(perimage.smoothed(patches.numpy())[:, 0, 0], kernel[:, 0, 1, 1].numpy())


@pytest.mark.parametrize("name", ["Color", "Contrast", "Sharpness", "AutoContrast", "Equalize"])
@pytest.mark.parametrize("size", [(7, 9), (24, 40), (33, 31), (3, 5), (5, 3), (2, 6)])
def test_whole_image_ops_equal_their_kernels(name: str, size: tuple[int, int]) -> None:
    """Ops that read the whole image, on real photos (RGB and grey) of sizes whose pixel counts are not
    powers of two, at values across the widest range and both signs."""
    images = photos(6, *size)
    form, kernel = perimage.PER_IMAGE[name], OPS[name].kernel
    values = torch.tensor([-0.99, -0.5, -0.03, 0.0, 0.01, 0.37, 0.99])
    for batch in (images, images[:, :1]):
        for value in values:
            value = value.expand(len(batch)).contiguous()
            aux = torch.zeros(len(batch), ops.AUX_DRAWS)
            params = form.prepare(kernel, value, aux, *size)
            out = np.stack([form.apply(image.numpy(), param) for image, param in zip(batch, params)])
            assert out.dtype == np.uint8, name
            assert np.array_equal(out, kernel(batch, value, aux).numpy()), f"{name} at {value[0].item()}"


def test_the_tensor_path_for_other_devices_gives_the_numpy_paths_pixels() -> None:
    """Images on a GPU run every op's batch kernel on a batch of one; a CPU tensor handed to ``_apply``
    takes that path here, and must give the pixels of the numpy path."""
    policy = Policy(name="every-op", augment=TrivialAugment(ops=list(OPS), ranges="wide"),
                    post=[OpCall(op="RandomCrop", probability=1.0, magnitude=0.25)])
    images = photos(DRAW_AHEAD, 20, 36)
    tensors, arrays = PolicyTransform(policy, seed=9), PolicyTransform(policy, seed=9)
    through_torch = torch.stack([tensors._apply(image) for image in images])
    through_numpy = torch.stack([torch.from_numpy(arrays._apply(image.numpy())) for image in images])
    assert torch.equal(through_torch, through_numpy) and not torch.equal(through_torch, images)

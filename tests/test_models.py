"""Every registered backbone: shapes, gradients, pickling, layouts, input sizes, parameter counts, slimming."""
from __future__ import annotations

import math
import pickle

import pytest
import torch
import torch.nn.functional as nnf
from torch import nn

from autoaug.errors import AutoaugError, UnknownNameError
from autoaug.model_specs import MODEL_SIZES, NUM_CLASSES
from autoaug.models import MODELS, build_model, count_parameters, list_models, register_model
from autoaug.models.layers import downsample
from autoaug.models.proxy import ProxyNet
from autoaug.models.resnet import RESNET18, ResNet
from autoaug.models.slimmable import SlimConv2d, SlimLinear, SwitchableBatchNorm2d

ALL = list_models()
SLIMMABLE = [name for name in ALL if MODELS[name].slimmable]
PUBLISHED = [name for name, size in MODEL_SIZES.items() if size.published]
REQUIRED = ("resnet18", "resnet34", "resnet50", "preact_resnet18", "wrn_28_10", "wrn_40_2", "wrn_16_8",
            "resnext29_8x64d", "se_resnet18", "eca_resnet18", "densenet_bc_100", "shufflenet_v2", "ghostnet", "proxy")


# batch-2 forwards are too small to split across threads, and on a busy machine two spinning
# OpenMP threads per process made these tests ten times slower than one
pytestmark = pytest.mark.usefixtures("one_thread")


def _conv_calls(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[tuple[nn.Module, int, int]]]:
    """The output, and (layer, output channels, multiply-adds per image) for every conv and linear layer run."""
    calls = []

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        per_output = inputs[0].shape[1] * math.prod(module.kernel_size) // module.groups \
            if isinstance(module, nn.Conv2d) else inputs[0].shape[-1]
        calls.append((module, output.shape[1], output[0].numel() * per_output))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        out = model(x)
    for handle in handles:
        handle.remove()
    return out, calls


def _macs(calls: list[tuple[nn.Module, int, int]]) -> int:
    return sum(macs for _, _, macs in calls)


def test_registry_holds_the_required_models_sorted():
    assert set(REQUIRED) <= set(ALL) and ALL == sorted(ALL)
    assert all(MODELS[name].name == name for name in ALL)


@pytest.mark.parametrize("name", ALL)
def test_forward_and_backward(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=7, slimmable=MODELS[name].slimmable)
    assert (getattr(model, "width_multipliers", None) is not None) == MODELS[name].slimmable
    x = torch.randn(2, 3, 32, 32)
    loss = torch.zeros(())
    for width in getattr(model, "width_multipliers", None) or (1.0,):  # every width, so per-width norms get gradients too
        if MODELS[name].slimmable:
            model.set_width(width)
        out = model(x)
        assert out.shape == (2, 7) and torch.isfinite(out).all()
        loss = loss + nnf.cross_entropy(out, torch.tensor([1, 5]))
    loss.backward()
    params = [p for p in model.parameters() if p.requires_grad]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params)
    assert sum(p.grad.abs().sum() for p in params) > 0


@pytest.mark.parametrize("name", ALL)
def test_pickle_round_trip_and_channels_last(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = model(x)
        assert torch.equal(pickle.loads(pickle.dumps(model))(x), out)
        model = model.to(memory_format=torch.channels_last)
        assert torch.allclose(model(x.contiguous(memory_format=torch.channels_last)), out, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("name", ALL)
def test_grey_images_down_to_16_pixels(name):
    model = build_model(name, num_classes=5, in_channels=1, image_size=16).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, 16, 16))
    assert out.shape == (2, 5) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ALL)
def test_large_images_get_a_downsampling_stem(name):
    torch.manual_seed(0)
    large = build_model(name, num_classes=3, image_size=96).eval()
    out, large_calls = _conv_calls(large, torch.randn(1, 3, 96, 96))
    assert out.shape == (1, 3) and torch.isfinite(out).all()
    # a 4x downsampling stem makes a 96px image cheaper than a 32px one through the CIFAR stem
    small = build_model(name, num_classes=3, image_size=32).eval()
    assert _macs(large_calls) < _macs(_conv_calls(small, torch.randn(1, 3, 32, 32))[1])


def test_resnet18_keeps_full_resolution_up_to_64_pixels():
    model = build_model("resnet18", num_classes=10, image_size=64).eval()
    out, calls64 = _conv_calls(model, torch.randn(1, 3, 64, 64))
    assert out.shape == (1, 10)
    ratio = _macs(calls64) / _macs(_conv_calls(model, torch.randn(1, 3, 32, 32))[1])
    assert 3.99 < ratio <= 4.0  # every conv sees 4x the pixels; only the head does not


def test_the_size_table_has_exactly_the_registered_models():
    missing, extra = sorted(set(ALL) - set(MODEL_SIZES)), sorted(set(MODEL_SIZES) - set(ALL))
    assert (missing, extra) == ([], []), \
        f"autoaug/model_specs.py: add declare(name, parameters=...) for {missing}; remove {extra} (not registered)"


@pytest.mark.parametrize("name", ALL)
def test_the_size_table_has_the_built_count(name):
    """`autoaug list models` prints the table without building anything: it must be what the model weighs."""
    with torch.device("meta"):  # no memory, no init: the count is the same
        count = count_parameters(build_model(name, num_classes=NUM_CLASSES))
    assert name in MODEL_SIZES, f"add declare({name!r}, parameters={count:_}) to autoaug/model_specs.py"
    assert MODEL_SIZES[name].parameters == count, \
        f"{name} has {count:_} parameters: write it in autoaug/model_specs.py"


def test_the_size_table_says_which_models_are_slimmable():
    """`autoaug list models` tells users which models MutualNet's width search can train, without torch."""
    slimmable = sorted(name for name in ALL if MODELS[name].slimmable)
    assert sorted(name for name, size in MODEL_SIZES.items() if size.slimmable) == slimmable
    assert slimmable == ["proxy", "proxy_tiny", "resnet18"]


@pytest.mark.parametrize("name", PUBLISHED)
def test_parameter_counts_match_published(name):
    """The table's count is the built one (above); a paper's figure is rounded, hence 5%."""
    size = MODEL_SIZES[name]
    assert abs(size.parameters / size.published - 1) < 0.05, f"{name}: {size.parameters:,} parameters"


def test_proxy_is_an_airbench_sized_net():
    assert 1e6 <= count_parameters(build_model("proxy", num_classes=10)) <= 2.5e6


def test_unknown_model_lists_known_ones():
    with pytest.raises(UnknownNameError, match="did you mean 'resnet18'") as error:
        build_model("resnet19", num_classes=10)
    assert all(name in str(error.value) for name in ALL)


def test_duplicate_registration_is_refused():
    before = MODELS["resnet18"]
    with pytest.raises(ValueError, match="duplicate model 'resnet18'"):
        register_model("resnet18")(ProxyNet)
    assert MODELS["resnet18"] is before


@pytest.mark.parametrize("arg", ["num_classes", "in_channels", "image_size"])
def test_build_arguments_must_be_positive(arg):
    with pytest.raises(AutoaugError, match=f"{arg} must be a positive integer, got 0"):
        build_model("proxy", **{"num_classes": 10, arg: 0})


@pytest.mark.parametrize("name", SLIMMABLE)
def test_smaller_widths_use_fewer_channels(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=10, slimmable=True).eval()
    assert model.width_multipliers == (0.25, 0.5, 0.75, 1.0)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        full, macs = model(x), {}
    for width in model.width_multipliers:
        model.set_width(width)
        out, calls = _conv_calls(model, x)
        macs[width] = _macs(calls)
        slim = [(layer, channels) for layer, channels, _ in calls if isinstance(layer, SlimConv2d)]
        assert all(channels == math.ceil(width * layer.out_channels) for layer, channels in slim)
        assert out.shape == (2, 10) and torch.equal(out, full) == (width == 1.0)
        with torch.no_grad():  # the width travels with the model
            assert torch.equal(pickle.loads(pickle.dumps(model))(x), out)
    assert macs[0.25] < macs[0.5] < macs[0.75] < macs[1.0]
    assert macs[0.25] < 0.1 * macs[1.0]  # both sides of almost every conv shrink: about 1/16 of the work


@pytest.mark.parametrize("name", SLIMMABLE)
def test_batch_norm_statistics_are_per_width(name):
    model = build_model(name, num_classes=10, slimmable=True).train()
    norms = [m for m in model.modules() if isinstance(m, SwitchableBatchNorm2d)]
    assert norms

    def means() -> list[list[torch.Tensor]]:
        return [[bn.running_mean.clone() for bn in switch.norms] for switch in norms]

    x = torch.randn(2, 3, 32, 32)
    for trained in (0, 3):  # width 0.25, then 1.0: only the trained width's statistics move
        before = means()
        model.set_width(model.width_multipliers[trained])
        with torch.no_grad():  # batch norm still updates its running statistics
            model(x)
        for old, new in zip(before, means()):
            assert [not torch.equal(a, b) for a, b in zip(old, new)] == [i == trained for i in range(4)]


@pytest.mark.parametrize("name", SLIMMABLE)
def test_invalid_width_names_the_allowed_ones(name):
    model = build_model(name, num_classes=10, slimmable=True)
    with pytest.raises(ValueError, match=r"0\.3 is not one of this model's widths \[0\.25, 0\.5, 0\.75, 1\.0\]"):
        model.set_width(0.3)


def test_custom_width_multipliers_are_the_only_allowed_ones():
    model = ProxyNet(num_classes=10, in_channels=3, small_input=True, width_multipliers=(1.0, 0.5))
    assert model.width_multipliers == (0.5, 1.0)
    with pytest.raises(ValueError, match=r"\[0\.5, 1\.0\]"):
        model.set_width(0.25)
    with pytest.raises(ValueError, match="include 1.0"):
        ProxyNet(num_classes=10, in_channels=3, small_input=True, width_multipliers=(0.5,))


def test_slimmable_resnet18_at_full_width_is_the_plain_resnet18():
    torch.manual_seed(0)
    slim = build_model("resnet18", num_classes=10, slimmable=True).eval()
    plain = ResNet(RESNET18, num_classes=10, in_channels=3, small_input=True).eval()
    full = f"norms.{len(slim.width_multipliers) - 1}."  # the full width's norm holds the plain norm's tensors
    state = {key.replace(full, ""): value for key, value in slim.state_dict().items()
             if ".norms." not in key or full in key}
    plain.load_state_dict(state)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(slim(x), plain(x))


def test_slim_layers_slice_the_shared_weights():
    torch.manual_seed(0)
    conv, linear = SlimConv2d(8, 16, 3, padding=1), SlimLinear(16, 4)
    x, features = torch.randn(1, 8, 5, 5), torch.randn(1, 16)
    assert torch.equal(conv(x), nnf.conv2d(x, conv.weight, padding=1))
    conv.width = linear.width = 0.5
    assert torch.allclose(conv(x[:, :4]), nnf.conv2d(x[:, :4], conv.weight[:8, :4], padding=1))
    assert torch.allclose(linear(features[:, :8]), nnf.linear(features[:, :8], linear.weight[:, :8], linear.bias))


# ---- parameter counts against independent computations --------------------------------------------

def _torchvision_at_cifar_stem(builder) -> int:
    """torchvision's ImageNet ResNet with the CIFAR stem (a 3x3 stride-1 conv, no max pool), 10 classes."""
    model = builder(num_classes=10)
    model.conv1, model.maxpool = nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.Identity()
    return count_parameters(model)


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50"])
def test_resnets_weigh_exactly_what_torchvision_does(name):
    torchvision = pytest.importorskip("torchvision")
    builder = {"resnet18": torchvision.models.resnet18, "resnet34": torchvision.models.resnet34,
               "resnet50": torchvision.models.resnet50}[name]
    with torch.device("meta"):
        assert count_parameters(build_model(name, num_classes=10)) == _torchvision_at_cifar_stem(builder)


def _preact_resnet18_by_hand(classes: int = 10) -> int:
    """He et al. (2016b) at the CIFAR stem: per block BN-conv3x3-BN-conv3x3, a bias-free 1x1 conv shortcut
    where the shape changes, a final BN before pooling, a linear head with bias."""
    total, cin = 3 * 64 * 9, 64
    for cout in (64, 64, 128, 128, 256, 256, 512, 512):
        total += 2 * cin + cin * cout * 9 + 2 * cout + cout * cout * 9 + (cin * cout if cin != cout else 0)
        cin = cout
    return total + 2 * 512 + 512 * classes + classes


def _wide_resnet_by_hand(depth: int, k: int, classes: int = 10) -> int:
    """Zagoruyko and Komodakis (2016): the same block, widths 16k, 32k, 64k, (depth - 4) / 6 blocks a stage."""
    total, cin = 3 * 16 * 9, 16
    for width in (16 * k, 32 * k, 64 * k):
        for _ in range((depth - 4) // 6):
            total += 2 * cin + cin * width * 9 + 2 * width + width * width * 9 + (cin * width if cin != width else 0)
            cin = width
    return total + 2 * cin + cin * classes + classes


@pytest.mark.parametrize(("name", "by_hand", "published"), [
    ("preact_resnet18", _preact_resnet18_by_hand(), 11.17e6),
    ("wrn_28_10", _wide_resnet_by_hand(28, 10), 36.5e6),  # 36,479,194, as the WRN reference code reports
    ("wrn_40_2", _wide_resnet_by_hand(40, 2), 2.2e6),
    ("wrn_16_8", _wide_resnet_by_hand(16, 8), 11.0e6),
])
def test_parameter_counts_match_the_papers_architecture(name, by_hand, published):
    with torch.device("meta"):
        assert count_parameters(build_model(name, num_classes=10)) == by_hand
    assert round(by_hand / 1e5) == round(published / 1e5)


def test_wrn_28_10_has_the_well_known_count():
    with torch.device("meta"):
        assert count_parameters(build_model("wrn_28_10", num_classes=10)) == 36_479_194


def test_plain_resnet18_keeps_standard_keys_and_count():
    """With width search off, resnet18 is the plain network: no per-width norms, the standard 11.17M."""
    torch.manual_seed(0)
    built = build_model("resnet18", num_classes=10)
    plain = ResNet(RESNET18, num_classes=10, in_channels=3, small_input=True)
    assert list(built.state_dict()) == list(plain.state_dict())
    assert count_parameters(built) == count_parameters(plain) == 11_173_962
    assert not any(isinstance(m, (SwitchableBatchNorm2d, SlimConv2d, SlimLinear)) for m in built.modules())
    slim = build_model("resnet18", num_classes=10, slimmable=True)
    assert count_parameters(slim) > count_parameters(plain)  # one BN per width
    with pytest.raises(ValueError, match="built plain"):
        built.set_width(0.5)


def test_only_slimmable_entries_build_slimmable():
    with pytest.raises(AutoaugError, match="'wrn_40_2' has no slimmable variant .*proxy, proxy_tiny, resnet18"):
        build_model("wrn_40_2", num_classes=10, slimmable=True)


def test_attention_resnets_add_what_the_papers_say():
    """SE (reduction 16, biased linears): 2C^2/16 + C/16 + C per block; ECA: one 1-D conv of size
    t = int((log2 C + 1) / 2), made odd by adding one, as in the ECA reference code (3 for 64, 5 above)."""
    couts = (64, 64, 128, 128, 256, 256, 512, 512)
    se = sum(2 * c * c // 16 + c // 16 + c for c in couts)
    eca = sum(t if t % 2 else t + 1 for t in (int((math.log2(c) + 1) / 2) for c in couts))
    with torch.device("meta"):
        base = count_parameters(build_model("resnet18", num_classes=10))
        assert count_parameters(build_model("se_resnet18", num_classes=10)) == base + se
        assert count_parameters(build_model("eca_resnet18", num_classes=10)) == base + eca == base + 36


def test_the_proxy_halves_the_map_in_each_of_its_three_blocks():
    # airbench: a 32-pixel image keeps 32 through the CIFAR stem, then each block pools by 2: 16, 8, 4
    model = build_model("proxy_tiny", num_classes=10).eval()
    with torch.no_grad():
        assert model.features(torch.zeros(1, 3, 32, 32)).shape == (1, 64, 4, 4)


def test_a_bottleneck_has_a_relu_after_each_of_its_first_two_convs():
    model = build_model("resnet50", num_classes=10)
    bottleneck = next(m for m in model.modules() if type(m).__name__ == "Bottleneck")
    kinds = [type(m) for m in bottleneck.body][:8]
    assert kinds == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Conv2d, nn.BatchNorm2d]


def test_the_large_input_downsampling_is_a_3x3_stride_2_max_pool_padded_by_1():
    assert downsample(True) == []
    pool = nn.Sequential(*downsample(False))
    image = torch.arange(16.0).reshape(1, 1, 4, 4)
    # windows centred on pixels (0, 0), (0, 2), (2, 0), (2, 2), reaching one pixel out (padding 1)
    assert torch.equal(pool(image), torch.tensor([[[[5.0, 7.0], [13.0, 15.0]]]]))

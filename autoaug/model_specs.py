"""The model table: each registered model's parameter count, without torch, so `autoaug list models` starts fast.

The builders live in ``autoaug.models`` (which loads torch). tests/test_models.py builds every registered
model and checks its count against this table, so a changed layer, or a model registered without its row
here, fails there with the row to write.
"""
from __future__ import annotations

from dataclasses import dataclass

from autoaug.errors import Registry

NUM_CLASSES = 10  # every count is of the model built with this many classes, 3 channels and 32x32 inputs


@dataclass(frozen=True)
class ModelSize:
    """One model's parameter count as built here, and the literature's at 10 classes and 32x32, where given;
    ``slimmable``: it can be built slimmable (MutualNet's width x resolution training)."""

    name: str
    parameters: int
    published: float | None = None
    slimmable: bool = False


MODEL_SIZES: Registry = Registry("model")


def declare(name: str, *, parameters: int, published: float | None = None, slimmable: bool = False) -> None:
    """Add ``name``'s count (the plain network, not its slimmable variant) to the table."""
    MODEL_SIZES.add(name, ModelSize(name, parameters, published, slimmable))


declare("densenet_bc_100", parameters=769_162, published=0.8e6)
declare("eca_resnet18", parameters=11_173_998)
declare("ghostnet", parameters=3_913_546)  # the paper: 5.2M at ImageNet, less its 1.28M 1000-class head
declare("preact_resnet18", parameters=11_172_170, published=11.17e6)
declare("proxy", parameters=1_978_016, slimmable=True)
declare("proxy_tiny", parameters=75_280, slimmable=True)
declare("resnet18", parameters=11_173_962, published=11.17e6, slimmable=True)
declare("resnet34", parameters=21_282_122, published=21.28e6)
declare("resnet50", parameters=23_520_842, published=23.52e6)
declare("resnext29_8x64d", parameters=34_426_698, published=34.4e6)
declare("se_resnet18", parameters=11_263_042)
declare("shufflenet_v2", parameters=1_263_854, published=1.26e6)
declare("wrn_16_8", parameters=10_961_370, published=11.0e6)
declare("wrn_28_10", parameters=36_479_194, published=36.5e6)
declare("wrn_40_2", parameters=2_243_546, published=2.2e6)

"""autoaug: fast search for data-augmentation policies, delivered as portable policy.json artifacts."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autoaug.errors import AutoaugError
    from autoaug.augment import BatchAugment, PolicyTransform, SharedProgress
    from autoaug.mixing import BatchMixer
    from autoaug.policy import Policy, load_policy
    from autoaug.regime import Regime, RegimeBatch

__version__ = "0.1.0"
# public name -> the module that defines it; each loads on first use, so `import autoaug` stays cheap
# (no torch, no ray) and the command line starts fast.  A new export is one line here.
_EXPORTS = {
    "AutoaugError": "autoaug.errors",
    "BatchAugment": "autoaug.augment",
    "BatchMixer": "autoaug.mixing",
    "Policy": "autoaug.policy",
    "PolicyTransform": "autoaug.augment",
    "Regime": "autoaug.regime",
    "RegimeBatch": "autoaug.regime",
    "SharedProgress": "autoaug.augment",
    "load_policy": "autoaug.policy",
}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'autoaug' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip this hook
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))

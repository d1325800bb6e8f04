"""autoaug: fast search for data-augmentation policies, delivered as portable policy.json artifacts."""
from autoaug.augment import BatchAugment, PolicyTransform, SharedProgress
from autoaug.errors import AutoaugError
from autoaug.mixing import BatchMixer
from autoaug.policy import Policy, load_policy
from autoaug.regime import Regime, RegimeBatch

__version__ = "0.1.0"
__all__ = ["AutoaugError", "BatchAugment", "BatchMixer", "Policy", "PolicyTransform", "Regime", "RegimeBatch",
           "SharedProgress", "load_policy", "__version__"]

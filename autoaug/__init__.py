"""autoaug: fast search for data-augmentation policies, delivered as portable policy.json artifacts."""
from autoaug.errors import AutoaugError
from autoaug.policy import Policy, load_policy

__version__ = "0.1.0"
__all__ = ["AutoaugError", "Policy", "load_policy", "__version__"]

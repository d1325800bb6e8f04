"""Independent random streams from one seed: ``derive_seed(seed, *path)``."""
from __future__ import annotations

import numpy as np


def derive_seed(seed: int, *path: int) -> int:
    """A 63-bit seed for the stream at ``path`` below ``seed``, independent of every other (seed, path).

    numpy's SeedSequence hashes the pair, so seed 1's first stream is unrelated to seed 0's second,
    as ``seed + k`` offsets were not.
    """
    state = np.random.SeedSequence(entropy=seed % 2**128, spawn_key=path).generate_state(2, np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1

"""derive_seed: pinned values (a stream's seed must never change between versions) and its range."""
from __future__ import annotations

import numpy as np
import pytest

from autoaug.seeding import derive_seed


@pytest.mark.parametrize(("seed", "path", "expected"), [
    (0, (), 6375474603054492659),
    (0, (1,), 1445747665984815037),
    (0, (1, 2), 2183170420669903750),
    (12345, (2,), 1379910854539928737),
])
def test_derived_seeds_are_pinned(seed, path, expected):
    assert derive_seed(seed, *path) == expected


def test_the_seed_is_63_bits_from_two_words_of_the_seed_sequence():
    # the high 32 bits from the first word, the low 31 from the second word's top 31 bits
    words = np.random.SeedSequence(entropy=0, spawn_key=(1,)).generate_state(2, np.uint32)
    assert derive_seed(0, 1) == int(words[0]) * 2**31 + int(words[1]) // 2
    seeds = [derive_seed(s) for s in range(2000)]
    assert max(seeds) < 2**63 and max(seeds) > 2**62 and min(seeds) >= 0 and len(set(seeds)) == 2000


def test_negative_and_huge_seeds_wrap_modulo_2_to_the_128():
    assert derive_seed(-1) == derive_seed(2**128 - 1) == 1760917370337659708
    assert derive_seed(2**128 + 5, 3) == derive_seed(5, 3)

"""generate.decode_state_bytes, the size the decoder's states are checked against before they are
allocated, equals the bytes of the states themselves for one stream, for every preset: KV caches and
rings, recurrent states, Hyena's input history (batch second) and filter rows (no batch axis), Zamba's
shared block's caches."""
import pytest

from hybridref.describe import state_bytes
from hybridref.generate import decode_state_bytes
from hybridref.models.char_lm import PRESETS, CharLM


@pytest.mark.parametrize("arch", sorted(PRESETS))
def test_counted_before_allocation_equals_allocated(arch):
    model = CharLM.preset(arch, 11).to("numpy")
    for positions in (1, 300):
        assert decode_state_bytes(model, positions) == state_bytes(model.init_state(1, positions))

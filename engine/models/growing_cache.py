"""A key/value cache layer with room to grow, for the long-running batch of many searches.

transformers' `DynamicLayer` appends a token by concatenating the whole cache (``torch.cat``),
a copy of every key and value at every token; in a batch of 8 searches that took as long as
the model itself (profiled: docs/scaling.md). `GrowingLayer` keeps its keys and values as
views of larger buffers and writes each new token in place, growing the buffers by half when
they are full. The attention reads the same numbers either way.

Not here: which batch uses it (engine/models/decode.py, ``Decoder(growing=True)``).
"""

from __future__ import annotations


_GROWING = None


def growing_layer():
    """The `GrowingLayer` class, defined on first use (transformers is imported lazily)."""
    global _GROWING
    if _GROWING is None:
        from transformers.cache_utils import DynamicLayer

        class GrowingLayer(DynamicLayer):
            """A key/value layer whose ``keys``/``values`` are views of buffers with spare room, so
            a new token is written in place: DynamicLayer copies the whole cache at every token
            (``torch.cat``), which took as long as the model itself in a batch of 8 searches.
            Anything that replaces ``keys`` (a join, a leave, a cut) gets fresh buffers at the
            next update."""

            def update(self, key_states, value_states, *args, **kwargs):
                if not self.is_initialized:
                    self.lazy_initialization(key_states, value_states)
                have = self.keys.shape[-2] if self.keys.numel() else 0
                need = have + key_states.shape[-2]
                kb = getattr(self, "_kb", None)
                if not (have and kb is not None and kb.shape[2] >= need and kb.shape[0] == self.keys.shape[0]
                        and self.keys.data_ptr() == kb.data_ptr() and self.keys.stride() == kb.stride()):
                    room = need + max(64, need // 2)
                    kb = key_states.new_empty(key_states.shape[:2] + (room, key_states.shape[3]))
                    vb = value_states.new_empty(value_states.shape[:2] + (room, value_states.shape[3]))
                    if have:
                        kb[:, :, :have], vb[:, :, :have] = self.keys, self.values
                    self._kb, self._vb = kb, vb
                self._kb[:, :, have:need] = key_states
                self._vb[:, :, have:need] = value_states
                self.keys, self.values = self._kb[:, :, :need], self._vb[:, :, :need]
                return self.keys, self.values

        _GROWING = GrowingLayer
    return _GROWING

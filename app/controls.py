"""Form controls that check what arrives through the Gradio API before a callback runs.

Gradio's own `gr.Slider.preprocess` compares the value with its bounds, so a client that sends
None or text for a slider gets Gradio's generic "the upstream Gradio app has raised an
exception" (a TypeError inside Gradio), and one out of range gets "Value 5000 is greater than
maximum value 200." with no word of which setting. `Slider` refuses both with a `gr.Error` that
names the setting by its label and says the range, the way `engine.inputs.whole` does for the
callbacks. In the browser nothing changes: the page cannot send such values, and the component
is drawn by Gradio's own slider (``is_template``).

Gradio writes a type stub, app/controls.pyi, next to any module that defines a component
class, when the module is first imported (quietly skipped where the folder is read-only). It is
generated, so .gitignore leaves it out.
"""

from __future__ import annotations

import math

import gradio as gr

from app import i18n


class Slider(gr.Slider):
    """`gr.Slider` whose API input must be a finite number within its bounds."""

    is_template = True          # the page draws it with Gradio's slider

    def preprocess(self, payload):
        name = i18n.plain(self.label) if self.label else i18n.t("a slider")   # the label in the user's language
        lo, hi = self.minimum, self.maximum
        number = isinstance(payload, (int, float)) and not isinstance(payload, bool) and math.isfinite(payload)
        if not number or not lo <= payload <= hi:
            shown = repr(payload)
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            key = ("{name} must be a number from {lo} to {hi}, got {value}" if not number
                   else "{name} must be from {lo} to {hi}, got {value}")
            raise gr.Error(i18n.t(key, name=name, lo=f"{lo:g}", hi=f"{hi:g}", value=shown), print_exception=False)
        return super().preprocess(payload)

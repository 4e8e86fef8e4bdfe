"""What a number means, said beside it: the short lines the views put next to the numbers a
student stumbles on (issue 24 part 5).

- Semantic entropy's four estimators: their scale (0 = every sample means the same, ln N = all
  different) and why the 2023 Monte-Carlo estimator is below zero (ten agreeing samples give
  −ln 10 = −2.303 nats, not 0);
- UCT's explore term and Q (the node inspector, the Selected narration);
- LECO's average, divergence and transition scores;
- min-p's threshold (the Sampling lab's position line).

Each line goes through `t` (app/i18n.py), so it is in the reader's language; the Chinese is in
app/locales/zh.json. Pure functions: the views call them, tests/test_number_notes.py checks
the numbers they quote against the estimators.

Not here: the numbers themselves (engine/scoring/, engine/search/, engine/sampling_lab.py).
"""

from __future__ import annotations

import math

from app.i18n import t


def entropy_note(estimator: str, n: int) -> str:
    """How to read ``estimator``'s value for ``n`` samples (nats)."""
    ln = f"{math.log(n):.3f}" if n > 0 else "—"
    if estimator == "discrete":
        return t("0 = all {n} samples mean the same; ln {n} = {ln} = all different", n=n, ln=ln)
    if estimator == "rao":
        return t("same scale (0 to ln {n} = {ln}), each cluster weighted by its samples' likelihood", n=n, ln=ln)
    if estimator == "mc2023":
        return t("shifted, can be below 0: a cluster's probabilities are summed with repeats counted again, "
                 "so all {n} samples agreeing gives −ln {n} = −{ln}, not 0; lower = more agreement. "
                 "Read it only against the routing thresholds", n=n, ln=ln)
    if estimator == "naive":
        return t("minus the mean log-likelihood of the raw answers, clusters ignored: how unsure the model was "
                 "of its own wording, 0 when every token was certain")
    raise ValueError(f"estimator must be one of discrete, rao, mc2023, naive, got {estimator!r}")


def explore_note() -> str:
    """Under a UCT table."""
    return t("explore = c·√(ln N_parent / N): large for a child visited rarely, shrinking as its N grows; "
             "Q = the mean reward of the rollouts through the child. UCT = Q + explore; the highest wins.")


def q_note(reward: str | None) -> str:
    """Beside a node's Q, for the run's reward (``gold``: ±1 by the answer key, else 0–1)."""
    if reward == "gold":
        return t("Q = value ÷ N, the mean reward of the rollouts through this node: from −1 (every one wrong "
                 "by the answer key) to +1 (every one right)")
    return t("Q = value ÷ N, the mean reward of the rollouts through this node, from 0 to 1 "
             "(the colour of the node)")


def leco_note() -> str:
    """Under LECO's table of rounds."""
    return t("avg: the mean probability of the step's tokens (1 = certain). div: how unevenly sure the model "
             "was across them, 0 when all equally sure — it is subtracted. trans: the mean probability of the "
             "step's first five tokens. Confidence = avg + trans − div, at most 2; the cut is at the earliest "
             "of the least confident steps.")


def min_p_note(min_p: float, p_max: float) -> str:
    """Beside the min-p threshold at one position."""
    return t("Tokens below the threshold are cut. It follows the top token: {min_p} × {p_max} here, so a "
             "confident position keeps few tokens and an unsure one many (top-p keeps a fixed share of the mass "
             "instead).", min_p=f"{min_p:g}", p_max=f"{p_max:.3f}")

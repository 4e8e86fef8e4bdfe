"""The search tree, folded from events.

A flat table of nodes addressed by id (= creation order; ROOT is 0, its parent NO_PARENT).
`Tree.apply(event)` is the only way it changes, so folding the first k events of a run gives
the tree exactly as it was at moment k: the live view, replay and the store all use this.

Not here: deciding anything (engine/search/) or drawing (app/).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from engine import events as E


@dataclass
class Node:
    id: int
    parent: int
    depth: int
    action: str
    text: str
    tokens: list = field(default_factory=list)     # [[id, text, logprob], ...]
    terminal: bool = False
    answer: str | None = None
    correct: bool | None = None
    prior: float | None = None
    children: list[int] = field(default_factory=list)
    visits: int = 0
    value: float = 0.0                             # sum of backpropagated rewards
    reward: float | None = None                    # terminal reward, once given
    last_selection: dict | None = None             # the candidate row this node had when last scored
    votes: "E.Voted | None" = None                 # rStar: the votes behind the node's answer
    code: dict | None = None                       # CodeExecuted fields (code-verified MCTS)
    reflection: str | None = None                  # SRA-MCTS: the reflection written at this node
    reflection_ends: bool = False
    self_eval: dict | None = None                  # SRA-MCTS: {"score", "parsed", "raw", "source"}
    rollout: dict | None = None                    # SRA-MCTS: the last simulation from this node
    score: dict | None = None                      # a verifier's score of the path: {"score", "source", "model"}
    q_init: float | None = None                    # MCTS with a PPM: Q's starting value (one pseudo-visit)

    @property
    def q(self) -> float:
        if self.q_init is not None:     # the PPM's score counts as one visit's value (docs/ppm.md)
            return (self.q_init + self.value) / (self.visits + 1)
        return self.value / self.visits if self.visits else 0.0


class Tree:
    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.run: E.RunStarted | None = None
        self.final: E.FinalAnswer | None = None
        self.finished: E.RunFinished | None = None
        self.iteration = 0
        self.iterations = 0
        self.events_applied = 0
        self.last_path: list[int] = []
        # rStar's discriminator: the candidates, per candidate its cuts/completions/verdict, the table
        self.candidates: E.CandidatesCollected | None = None
        self.discriminator: dict[int, dict] = {}
        self.candidate_table: E.CandidateTable | None = None

    @classmethod
    def fold(cls, events: Iterable[E.Event]) -> "Tree":
        t = cls()
        for ev in events:
            t.apply(ev)
        return t

    def __len__(self) -> int:
        return len(self.nodes)

    def __getitem__(self, node_id: int) -> Node:
        return self.nodes[node_id]

    def apply(self, ev: E.Event) -> None:
        self.events_applied += 1
        if isinstance(ev, E.NodeProposed):
            if ev.node != len(self.nodes):
                raise ValueError(f"node ids must be creation order: expected {len(self.nodes)}, got {ev.node}")
            if ev.parent != E.NO_PARENT and not 0 <= ev.parent < len(self.nodes):
                raise ValueError(f"node {ev.node} names parent {ev.parent}, which does not exist")
            self.nodes.append(Node(ev.node, ev.parent, ev.depth, ev.action, ev.text, list(ev.tokens),
                                   ev.terminal, ev.answer, ev.correct, ev.prior))
            if ev.parent != E.NO_PARENT:
                self.nodes[ev.parent].children.append(ev.node)
        elif isinstance(ev, E.Backprop):
            if any(not 0 <= nid < len(self.nodes) for nid in ev.path):
                raise ValueError(f"backprop path {ev.path} names a node that does not exist")
            for nid, (visits, value) in zip(ev.path, ev.after):
                self.nodes[nid].visits, self.nodes[nid].value = int(visits), float(value)
            self.last_path = list(ev.path)
        elif isinstance(ev, E.TerminalReward):
            self.nodes[ev.node].reward = ev.reward
        elif isinstance(ev, E.Selected):
            for row in ev.candidates:
                self.nodes[row["node"]].last_selection = row
        elif isinstance(ev, E.CodeExecuted):
            self.nodes[ev.node].code = {k: v for k, v in ev.to_json().items() if k not in ("type", "node")}
        elif isinstance(ev, E.Reflected):
            self.nodes[ev.node].reflection, self.nodes[ev.node].reflection_ends = ev.text, ev.ends
        elif isinstance(ev, E.SelfEvaluated):
            self.nodes[ev.node].self_eval = {"score": ev.score, "parsed": ev.parsed, "raw": ev.raw, "source": ev.source}
        elif isinstance(ev, E.StepScored):
            n = self.nodes[ev.node]
            n.score = {"score": ev.score, "source": ev.source, "model": ev.model}
            if ev.q_init:
                n.q_init = ev.score
        elif isinstance(ev, E.SraRollout):
            self.nodes[ev.node].rollout = {k: v for k, v in ev.to_json().items() if k not in ("type", "node")}
        elif isinstance(ev, E.IterationStarted):
            self.iteration, self.iterations = ev.iteration, ev.of
        elif isinstance(ev, E.RunStarted):
            self.run = ev
        elif isinstance(ev, E.FinalAnswer):
            self.final = ev
        elif isinstance(ev, E.RunFinished):
            self.finished = ev
        elif isinstance(ev, E.Voted):
            self.nodes[ev.node].votes = ev
        elif isinstance(ev, E.CandidatesCollected):
            self.candidates = ev
            self.discriminator = {c["candidate"]: {"cuts": [], "completions": [], "verdict": None}
                                  for c in ev.candidates}
        elif isinstance(ev, E.DiscriminatorCut):
            self.discriminator[ev.candidate]["cuts"].append(ev)
        elif isinstance(ev, E.DiscriminatorCompletion):
            self.discriminator[ev.candidate]["completions"].append(ev)
        elif isinstance(ev, E.DiscriminatorVerdict):
            self.discriminator[ev.candidate]["verdict"] = ev
        elif isinstance(ev, E.CandidateTable):
            self.candidate_table = ev

    # ---- reading -------------------------------------------------------------------------

    def path_to(self, node_id: int) -> list[int]:
        """Node ids from the root down to ``node_id``."""
        path = []
        while node_id != E.NO_PARENT:
            path.append(node_id)
            node_id = self.nodes[node_id].parent
        return path[::-1]

    def path_text(self, node_id: int) -> str:
        return "".join(self.nodes[n].text for n in self.path_to(node_id) if n != E.ROOT)

    def terminals(self) -> list[Node]:
        return [n for n in self.nodes if n.terminal]

    def unique_tokens(self) -> int:
        """Tokens in the tree, each node's own tokens counted once (the caching target)."""
        return sum(len(n.tokens) for n in self.nodes)

    def to_networkx(self):
        import networkx as nx
        g = nx.DiGraph()
        for n in self.nodes:
            g.add_node(n.id, depth=n.depth, action=n.action, text=n.text, visits=n.visits,
                       value=n.value, q=n.q, terminal=n.terminal, answer=n.answer or "",
                       correct="" if n.correct is None else str(n.correct),
                       reward="" if n.reward is None else n.reward)
            if n.parent != E.NO_PARENT:
                g.add_edge(n.parent, n.id)
        return g

"""Cards: an HTML report per task, as Metaflow's ``@card`` and ``current.card``.

    from keel import FlowSpec, step, card, current
    from keel.cards import Markdown, Table, Image, VegaChart, ProgressBar

    @card                                   # the default card: parameters, artifacts, the graph
    @step
    def train(self):
        bar = ProgressBar(max=10, label="epochs")
        current.card.append(bar)
        for epoch in range(10):
            ...
            bar.update(epoch + 1)
            current.card.refresh()          # the card as it is now, while the task runs
        current.card.append(Markdown("## Done"))

Read them back with ``keel.cards.get_cards(task)`` (or ``task.cards``), or write one to a file
with ``keel card view FLOW/RUN/STEP``. A card is self-contained HTML: it opens offline.

Where they are kept: the finished card in the artifact store (content-addressed), named by the
task's hidden artifact ``_keel_cards``; while the task runs, ``refresh()`` writes the card as it
is to ``KEEL_HOME/cards/FLOW/RUN/STEP/TASK/N.html``.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from typing import Any, Callable

from keel.cards.components import Artifact, Component, Image, Markdown, ProgressBar, Table, VegaChart

__all__ = ["Artifact", "Card", "Component", "Image", "Markdown", "ProgressBar", "Table", "VegaChart", "get_cards"]

CARDS_ARTIFACT = "_keel_cards"

_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}h1{font-size:1.4em}
table.tbl{border-collapse:collapse;margin:.5em 0}table.tbl td,table.tbl th{border:1px solid #ddd;padding:3px 8px;
text-align:left;font-size:.9em}.muted{color:#888}.pb progress{width:240px;margin:0 .5em}pre{background:#f6f6f6;
padding:.6em}section{margin-bottom:1.5em}code{background:#f3f3f3;padding:0 2px}"""


@dataclass(frozen=True)
class Card:
    """A task's card: its ``id`` (None for the default), ``type`` and HTML."""

    id: str | None
    type: str
    html: str
    pathspec: str

    def _repr_html_(self) -> str:  # notebooks show the card itself
        return self.html


class CardHandle:
    """One card of the running task: append components, then they are rendered with it."""

    def __init__(self, owner: "TaskCards", index: int, card_id: str | None, card_type: str):
        self._owner, self.index, self.id, self.type = owner, index, card_id, card_type
        self.components: list[Component] = []

    def append(self, component: Component) -> None:
        if not isinstance(component, Component):
            raise TypeError(f"current.card.append takes a card component (Markdown, Table, Image, VegaChart, "
                            f"ProgressBar, Artifact), got {type(component).__name__}")
        self.components.append(component)

    def extend(self, components: list[Component]) -> None:
        for component in components:
            self.append(component)

    def clear(self) -> None:
        self.components.clear()

    def refresh(self, data: Any = None) -> None:
        self._owner.refresh()

    def __len__(self) -> int:
        return len(self.components)


class TaskCards:
    """``current.card`` in a step with ``@card``: the card without an id takes ``append``;
    ``current.card["id"]`` reaches a card by its id."""

    def __init__(self, pathspec: str, decls: list[tuple[str | None, str]], live_dir: str | None,
                 context: Callable[[], dict[str, Any]]):
        self.pathspec = pathspec
        self.cards = [CardHandle(self, i, cid, ctype) for i, (cid, ctype) in enumerate(decls)]
        self._live_dir = live_dir
        self._context = context

    def _editable(self) -> CardHandle:
        plain = [c for c in self.cards if c.id is None] or self.cards
        return plain[0]

    def append(self, component: Component) -> None:
        self._editable().append(component)

    def extend(self, components: list[Component]) -> None:
        self._editable().extend(components)

    def clear(self) -> None:
        self._editable().clear()

    @property
    def components(self) -> list[Component]:
        return self._editable().components

    def __getitem__(self, card_id: str) -> CardHandle:
        for c in self.cards:
            if c.id == card_id:
                return c
        ids = ", ".join(repr(c.id) for c in self.cards if c.id) or "none"
        raise KeyError(f"this step has no card with id {card_id!r}; its card ids are: {ids}")

    def render(self) -> list[tuple[CardHandle, str]]:
        context = self._context()
        return [(c, render_card(self.pathspec, c.type, c.components, context)) for c in self.cards]

    def refresh(self) -> None:
        """Write the cards as they are now, so that a reader sees them while the task runs."""
        if not self._live_dir:
            return
        for handle, text in self.render():
            write_live(self._live_dir, self.pathspec, handle.index, text)


class NoCards:
    """``current.card`` in a step without ``@card``: calls are accepted and do nothing (as in
    Metaflow, where they only warn), so a flow runs with or without its cards."""

    def append(self, component: Any) -> None: ...
    def extend(self, components: Any) -> None: ...
    def clear(self) -> None: ...
    def refresh(self, data: Any = None) -> None: ...

    def __getitem__(self, card_id: str) -> "NoCards":
        return self

    @property
    def components(self) -> list[Component]:
        return []


def live_path(live_dir: str, pathspec: str, index: int) -> str:
    return os.path.join(live_dir, *pathspec.split("/"), f"{index}.html")


def write_live(live_dir: str, pathspec: str, index: int, text: str) -> None:
    path = live_path(live_dir, pathspec, index)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def render_card(pathspec: str, card_type: str, components: list[Component], context: dict[str, Any]) -> str:
    """A card as one HTML page. ``default``: parameters, artifacts and the graph, then the
    components; ``blank``: the components only."""
    body = [f"<h1>{html.escape(pathspec)}</h1>"]
    if card_type == "default":
        params = context.get("params") or {}
        arts = {k: v for k, v in (context.get("artifacts") or {}).items() if k not in params}
        if params:
            body.append("<section><h2>Parameters</h2>" + Table([[k, v] for k, v in params.items()],
                                                                 ["name", "value"]).render() + "</section>")
        body.append("<section><h2>Artifacts</h2>" + (Table(
            [[k, type(v).__name__, v] for k, v in sorted(arts.items())], ["name", "type", "value"]).render()
            if arts else '<p class="muted">none</p>') + "</section>")
        if context.get("graph"):
            body.append(f"<section><h2>Graph</h2><pre>{html.escape(context['graph'])}</pre></section>")
    if components:
        body.append("<section>" + "".join(c.render() for c in components) + "</section>")
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(pathspec)}</title>'
            f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>")


def get_cards(task: Any, card_id: str | None = None) -> list[Card]:
    """The cards of a client ``Task`` (``Flow("F").latest_run["train"].task``): the finished
    ones from the store, or, while the task runs, what its last ``refresh()`` wrote."""
    cards = task.cards
    return [c for c in cards if card_id is None or c.id == card_id]

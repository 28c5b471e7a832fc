"""The settings as the views need them: the YAML with the stored directory laid over it."""

from __future__ import annotations

from agent.settings.config import Settings
from agent.settings.directory import merge
from agent.store.directory import DirectoryRows
from agent.store.sqlite import Store


def laid(settings: Settings, store: Store, *, ended: bool = False) -> Settings:
    """``settings`` with the directory's people and lines; with ``ended``, the lines that
    ended as well, so that a person's history shows every leader."""
    if settings.directory is None:
        return settings
    rows = DirectoryRows(store)
    return merge(
        settings,
        rows.entries(left=True),
        rows.lines(open_only=not ended),
        ended=ended,
        left=rows.left(),
    )

"""The settings as the views need them: the YAML with the stored directory laid over it."""

from __future__ import annotations

from agent.settings.config import Settings
from agent.settings.directory import merge
from agent.store.directory import DirectoryRows
from agent.store.mailbox import MailboxLanguages, with_languages
from agent.store.sqlite import Store


def laid(settings: Settings, store: Store, *, ended: bool = False) -> Settings:
    """``settings`` with the directory's people and lines, and the languages read from
    mailboxes; with ``ended``, the lines that ended as well, so that a person's history
    shows every leader."""
    languages = MailboxLanguages(store).all()  # after the config's and the directory's
    if settings.directory is None:
        return with_languages(settings, languages)
    rows = DirectoryRows(store)
    merged = merge(
        settings,
        rows.entries(left=True),
        rows.lines(open_only=not ended),
        ended=ended,
        left=rows.left(),
    )
    return with_languages(merged, languages)

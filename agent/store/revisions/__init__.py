"""The store's Alembic revisions, shipped with the package and run from code
(``agent.store.database.upgrade``): no ``alembic.ini`` is needed where Cadence runs.

Revision ids are the schema's version numbers, zero-padded: ``0012`` is the schema the
twelve steps of ``agent.store.migrations`` made, the baseline Alembic starts from.
"""

"""The lineage of every artifact: who made it from what, with which code, and how it ended.

Modules, lowest first (each imports only those above it in this list):

- :mod:`pipelines.lineage.common`: statuses, how values are stored (:func:`json_safe`,
  :func:`summarise`, artifact kinds), the store's URL and the chain's canonical form; no SQLAlchemy.
- :mod:`pipelines.lineage.store`: the tables (artifacts, executions, events, after ML Metadata)
  and the engines (SQLAlchemy); re-exports :mod:`~pipelines.lineage.common`.
- :mod:`pipelines.lineage.sqlite_writer`: the same writes with the stdlib ``sqlite3`` on an existing
  local store, so a reused step costs no SQLAlchemy import.
- :mod:`pipelines.lineage.openlineage`: OpenLineage START/COMPLETE/FAIL events beside the store
  (plain JSON lines by default; :mod:`pipelines.lineage.openlineage_client`, which imports the
  openlineage-python client, only when OpenLineage is configured or already loaded;
  :mod:`pipelines.lineage.openlineage_ids` the names both share).
- :mod:`pipelines.lineage.record`: :func:`execution`, the context manager
  :func:`pipelines.runner.run_step` wraps every step in; writes the store, emits OpenLineage.
- :mod:`pipelines.lineage.query`, :mod:`pipelines.lineage.audit`, :mod:`pipelines.lineage.html`:
  the auditor's read-only questions (``pipelines lineage model|data|verify|runs``).

``from pipelines import lineage; lineage.execution(...)`` is the writer's entry point.
"""

from pipelines.lineage.record import execution

__all__ = ["execution"]

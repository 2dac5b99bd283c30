"""The host name a task reports to Airflow, with the worker's role: ``<role>@<fqdn>``.

Set as Airflow's ``[core] hostname_callable`` (``pipelines.worker_name.hostname``) by
scripts/stack.sh and docker/compose.yaml, so a task instance's ``hostname`` says which Celery worker
ran it (``heavy@host`` or ``default@host``) even when both workers share a machine. Without
``PIPELINES_WORKER_NAME`` it is the plain FQDN, Airflow's default. Imports nothing of Airflow.
"""

from __future__ import annotations

import os
import socket

WORKER_NAME_ENV = "PIPELINES_WORKER_NAME"


def hostname() -> str:
    role = os.environ.get(WORKER_NAME_ENV, "").strip()
    fqdn = socket.getfqdn()
    return f"{role}@{fqdn}" if role else fqdn

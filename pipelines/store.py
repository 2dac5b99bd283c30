"""The artifact store under ``home``: where each kind of artifact lives and which one is newest.

Layout: ``<home>/<kind>/<pipeline>/<artifact id>/``, one folder per artifact, complete once its
marker file (``KINDS[kind]``) is in it. Folders whose name starts with a dot are not artifacts:
``.tmp-*`` is one being written, ``.<id>.replaced-*`` one set aside by a forced re-run.
"""

from __future__ import annotations

import stat
from pathlib import Path

# kind (the folder under home) -> the file that proves an artifact of that kind is complete
KINDS = {
    "transforms": "transform.json",
    "models": "model.json",
    "evaluations": "evaluation.json",
}


def newest(home: Path, kind: str, pipeline: str, marker: str) -> Path | None:
    """The newest complete artifact folder of ``kind`` for ``pipeline``, or ``None`` if none.

    Newest by the modification time of its ``marker`` file (written last), ties broken by name.
    """
    root = Path(home) / kind / pipeline
    if not root.is_dir():
        return None
    candidates = []
    for folder in root.iterdir():
        if folder.name.startswith("."):
            continue
        try:
            info = (folder / marker).stat()
        except (FileNotFoundError, NotADirectoryError):  # not an artifact, or being replaced
            continue
        if stat.S_ISREG(info.st_mode):
            candidates.append((info.st_mtime_ns, folder.name, folder))
    return max(candidates)[2] if candidates else None

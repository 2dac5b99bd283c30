"""``PipelineOptions`` that make each view once (imported by :mod:`pipelines.beam_options` when a
step builds its options, so Beam is imported only then).

Beam asks the pipeline's options for a view (``options.view_as(TypeOptions)`` and others) on every
transform it applies and every result type it infers, and each view builds a fresh argparse
parser of the view's flags and parses the command line again: about 4,000 views in one
`pipelines run`, half a millisecond each (issue 11). A view shares its options' values
(``_all_options``) and the flags never change after construction, so the view made first for a
class is the view Beam would make again; this class keeps it.
"""

from __future__ import annotations

from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions


class CachedViewOptions(PipelineOptions):
    def view_as(self, cls):
        views = self.__dict__.setdefault("_views", {})
        view = views.get(cls)
        if view is None:
            view = views[cls] = super().view_as(cls)
        return view

    def __getstate__(self) -> dict[str, Any]:  # pickled and deep-copied without the views
        state = dict(super().__getstate__())
        state.pop("_views", None)
        return state

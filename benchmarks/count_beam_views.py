"""Counts Beam's options views inside one `pipelines run` (issue 11; benchmarks/results/scale.md).

Beam makes a view of the pipeline options (``PipelineOptions.view_as``) for every transform it
applies and every type it infers. Each view builds an argparse parser. This script wraps Beam's
``view_as`` and ``PipelineOptions.__init__``, runs `pipelines run` in this process on a fresh home
with the demo spans, and prints how many options objects were made and the time spent in
``view_as``. It is not part of ``make bench``: it measures a count, not a target.

    python benchmarks/count_beam_views.py [--home DIR]     # from the checkout to measure
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def _cli(argv: list[str]) -> None:
    from pipelines.cli import app

    try:
        app(argv)
    except SystemExit as exc:
        if exc.code:
            raise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, help="artifact store to use (default: a fresh one)")
    parser.add_argument("--end", default="2026-11-20", help="last demo span (default 2026-11-20)")
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="count_beam_views_"))
    _cli(["--home", str(home), "demo-data", "configs/adult.yaml", "--end", args.end])

    from apache_beam.options import pipeline_options as po

    seen = {"views": 0, "view_s": 0.0, "made": 0}
    view_as, init = po.PipelineOptions.view_as, po.PipelineOptions.__init__

    def counted_view_as(self, cls):
        start = time.perf_counter()
        try:
            return view_as(self, cls)
        finally:
            seen["views"] += 1
            seen["view_s"] += time.perf_counter() - start

    def counted_init(self, *a, **k):
        seen["made"] += 1
        init(self, *a, **k)

    po.PipelineOptions.view_as = counted_view_as  # type: ignore[method-assign]
    po.PipelineOptions.__init__ = counted_init  # type: ignore[method-assign]
    start = time.perf_counter()
    _cli(["--home", str(home), "run", "configs/adult.yaml", "--span", args.end, "--window", "7"])
    print(f"pipelines run: {time.perf_counter() - start:.1f} s wall; PipelineOptions made "
          f"{seen['made']}; Beam's own view_as called {seen['views']} times, "
          f"{seen['view_s']:.2f} s in all (home {home})")


if __name__ == "__main__":
    main()

"""``python -m pipelines.cli``: the same app as the ``pipelines`` console script."""

from pipelines.cli import app

app()

"""CachedViewOptions (pipelines.beam_views): a view is made once per class and behaves as Beam's own
views do: values shared both ways, copies and pickles independent of the original's views."""

from __future__ import annotations

import copy
import pickle

import pytest

pytest.importorskip("apache_beam")

from apache_beam.options.pipeline_options import (  # noqa: E402
    DirectOptions,
    PipelineOptions,
    StandardOptions,
    TypeOptions,
)

from pipelines.beam_views import CachedViewOptions  # noqa: E402

FLAGS = ["--direct_num_workers=2", "--type_check_strictness=ALL_REQUIRED"]


def test_views_are_made_once_and_read_like_beams():
    options = CachedViewOptions(FLAGS, runner="FnApiRunner")
    plain = PipelineOptions(FLAGS, runner="FnApiRunner")
    assert options.view_as(TypeOptions) is options.view_as(TypeOptions)
    for cls in (TypeOptions, DirectOptions, StandardOptions):
        ours, beams = options.view_as(cls), plain.view_as(cls)
        assert vars(ours._visible_options) == vars(beams._visible_options)
    assert options.get_all_options() == plain.get_all_options()


def test_a_value_set_in_one_view_is_seen_everywhere():
    options = CachedViewOptions(FLAGS)
    options.view_as(StandardOptions).runner = "PortableRunner"
    assert options.get_all_options()["runner"] == "PortableRunner"
    options.view_as(TypeOptions).view_as(StandardOptions).runner = "FnApiRunner"  # a view's view
    assert options.view_as(StandardOptions).runner == "FnApiRunner"


def test_copies_and_pickles_have_views_of_their_own():
    options = CachedViewOptions(FLAGS, runner="FnApiRunner")
    view = options.view_as(StandardOptions)
    for other in (copy.deepcopy(options), pickle.loads(pickle.dumps(options))):
        assert type(other) is CachedViewOptions
        assert other.view_as(DirectOptions).direct_num_workers == 2
        other.view_as(StandardOptions).runner = "PortableRunner"
        assert view.runner == "FnApiRunner"
        assert options.get_all_options()["runner"] == "FnApiRunner"
        assert other.get_all_options()["runner"] == "PortableRunner"

"""Tag selection: each pattern kind, their combination, latest N, and properties that must hold."""

from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regsync.kinds.image.tags import compile_pattern, loose_version, select_tags

TAGS = ["2.9", "v2.9.0", "2.9.1", "2.10.0", "3.0.0", "2.9.2rc1", "2.8.0", "latest",
        "2.9-cuda11.8-ubuntu20.04", "2.9-cuda12.1-ubuntu22.04", "2.9-cuda12.1-rc1"]


@pytest.mark.parametrize("include, exclude, expected", [
    (["2.9-cuda11.8-ubuntu20.04"], [], ["2.9-cuda11.8-ubuntu20.04"]),
    (["glob:2.9-cuda*"], ["glob:*-rc*"], ["2.9-cuda11.8-ubuntu20.04", "2.9-cuda12.1-ubuntu22.04"]),
    ([r"re:^2\.9\.\d+$"], [], ["2.9.1"]),
    (["semver:>=2.9,<3"], [], ["2.9", "v2.9.0", "2.9.1", "2.10.0"]),
    (["semver:^2.9"], ["2.10.0"], ["2.9", "v2.9.0", "2.9.1"]),
    (["semver:~2.9"], [], ["2.9", "v2.9.0", "2.9.1"]),
    (["semver:2.9.x"], [], ["2.9", "v2.9.0", "2.9.1"]),
    (["semver:>=2.9.2rc1,<2.10"], [], ["2.9.2rc1"]),
    (["latest", "semver:>=3"], ["re:^v"], ["3.0.0", "latest"]),
])
def test_pattern_kinds_and_combination(include, exclude, expected):
    assert sorted(select_tags(TAGS, include, exclude)) == sorted(expected)


def test_arbitrary_equality_range_does_not_crash():
    # `===` compares text; a non-version operand used to raise AttributeError while compiling.
    assert select_tags(TAGS, ["semver:===2.9.1"]) == ["2.9.1"]
    assert select_tags(TAGS, ["semver:===nightly"]) == []


def test_latest_orders_by_version():
    assert select_tags(TAGS, ["semver:>=2"], latest=2) == ["3.0.0", "2.10.0"]


def test_latest_falls_back_to_created_time():
    created = {"a": datetime(2024, 1, 1, tzinfo=timezone.utc), "b": datetime(2025, 1, 1, tzinfo=timezone.utc),
               "c": None}
    assert select_tags(["a", "b", "c"], ["glob:*"], latest=2, created=created.get) == ["b", "a"]


def test_loose_versions():
    assert str(loose_version("v2.9.0")) == "2.9.0"
    assert loose_version("2.9-cuda11.8-ubuntu20.04") is None


tag_text = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-", min_size=1, max_size=20)


@settings(max_examples=200, deadline=None)
@given(st.lists(tag_text, max_size=30), st.sampled_from(["glob:*", "glob:2.*", r"re:\d", "semver:>=1", "x1"]),
       st.integers(min_value=1, max_value=5))
def test_selection_is_a_subset_and_excludes_win(tags, pattern, latest):
    chosen = select_tags(tags, [pattern], [pattern])
    assert chosen == []
    picked = select_tags(tags, [pattern])
    assert set(picked) <= set(tags) and len(picked) == len(set(picked))
    assert all(compile_pattern(pattern)(t) for t in picked)
    limited = select_tags(tags, [pattern], latest=latest, created=lambda t: None)
    assert len(limited) <= latest and set(limited) <= set(picked)


def test_latest_ignores_a_non_version_tag_and_pre_releases():
    """One `latest` tag beside versions no longer switches the rule to creation-time order, and a
    pre-release does not win unless the rule asks for pre-releases."""
    tags = ["3.11.9", "3.12.5", "3.12.6rc1", "latest", "nightly"]
    assert select_tags(tags, ["glob:*"], latest=2, created=lambda t: None) == ["3.12.5", "3.11.9"]
    assert select_tags(tags, ["glob:*"], latest=1, created=lambda t: None, prereleases=True) == ["3.12.6rc1"]

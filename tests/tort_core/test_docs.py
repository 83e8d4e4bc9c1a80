"""Generated reference pages: every config field has a description, and the committed
docs/configuration.md is what `python -m tort_core.docs` writes from them."""

from __future__ import annotations

from tort_core import docs


def test_every_config_field_has_a_description():
    assert docs.missing_descriptions() == []


def test_the_committed_configuration_page_is_current():
    assert docs.PAGE.read_text() == docs.configuration_page(), "run `python -m tort_core.docs` and commit the page"


def test_the_page_lists_every_settable_key():
    from tort_core.config import known_keys

    page = docs.configuration_page()
    for key in known_keys():
        assert page.count(f"| `{key}` |") >= 1, key
    assert "| `loss.teacher_temp` | float (> 0) | `0.04` |" in page
    assert "*runtime.*" in page.split("| `device` |")[1].split("\n")[0]  # not part of the trial id

"""Hostile and mistaken sweep specs fail before anything runs, with one line naming the file and
the key, without exhausting the machine: alias bombs, deep nesting, huge grids, huge files, and
values no run can use."""

from __future__ import annotations

import resource
import time

import pytest

from tort_core.errors import ConfigError
from tort_core.sweep.spec import load_spec

BOMB = "\n".join(["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
                 + [f"    a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)])


def _spec(tmp_path, text: str, name: str = "s.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _fails(path, *fragments):
    t = time.monotonic()
    with pytest.raises(ConfigError) as err:
        load_spec(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(path)), message
    for f in fragments:
        assert f in message, (f, message)
    assert time.monotonic() - t < 10  # a bound, not a benchmark: the bad cases took minutes or never ended
    return message


def test_an_alias_bomb_in_a_free_form_override_is_refused(tmp_path):
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    text = "name: bomb\nprofile: demo\noverrides:\n  model.kwargs:\n    " + BOMB.replace("\n    ", "\n    ")
    _fails(_spec(tmp_path, text), "aliases are expanded")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 200_000  # KiB: no 10⁹-element walk


def test_an_alias_bomb_in_an_axis_value_is_refused(tmp_path):
    text = ("name: bomb\nprofile: demo\nx:\n  " + BOMB.replace("\n    ", "\n  ")
            + "\naxes:\n  model.kwargs: [*a8]\n")
    _fails(_spec(tmp_path, text), "aliases are expanded")


def test_deep_nesting_is_refused_without_a_recursion_error(tmp_path):
    text = "name: deep\nprofile: demo\noverrides: {model.kwargs: {x: " + "[" * 50_000 + "]" * 50_000 + "}}\n"
    _fails(_spec(tmp_path, text), "nested more than")


def test_a_huge_file_is_refused_before_it_is_read(tmp_path):
    text = "name: big\nprofile: demo\ndescription: " + "x" * 2_000_000 + "\n"
    _fails(_spec(tmp_path, text), "bytes")


@pytest.mark.parametrize("text, fragments", [
    ("seeds: true", ["seeds", "True"]),
    ("seeds: [1e23]", ["seeds", "1e23"]),
    ("seeds: [100000000000000000000000]", ["seeds", "2**63"]),
    ("seeds: 100000000", ["seeds", "at most"]),
    ("overrides: {optim.lr: .inf}", ["optim.lr", "finite"]),
    ("overrides: {loss.teacher_temp: .nan}", ["loss.teacher_temp", "finite"]),
    ("name: " + "x" * 300, ["name", "300 characters"]),
    ("axes: {loss.teacher_temp: [0.04, 0.04]}", ["listed twice"]),
    ("axes:\n  loss.teacher_temp: [0.04]\n  loss.teacher_temp: [0.06]", ["appears twice"]),
])
def test_values_no_run_can_use_are_refused(tmp_path, text, fragments):
    head = "profile: demo\n" + ("" if text.startswith("name:") else "name: s\n")
    _fails(_spec(tmp_path, head + text + "\n"), *fragments)


def test_a_grid_of_millions_fails_at_once_and_names_the_flag(tmp_path):
    from tort_core.sweep.expand import expand

    values = ", ".join(str(i / 1000) for i in range(1, 101))
    spec = load_spec(_spec(tmp_path, f"name: g\nprofile: demo\nseeds: 1000\naxes:\n  loss.teacher_temp: [{values}]\n"
                                     f"  loss.student_temp: [{values}]\n"))
    t = time.monotonic()
    with pytest.raises(ConfigError, match=r"10,000,000 trials.*--max-trials 10000000"):
        expand(spec)
    assert time.monotonic() - t < 5


def test_an_alias_bomb_in_a_set_value_is_refused():
    from tort_core.config import parse_sets

    value = "{" + BOMB.replace("\n    ", ", ").replace("[", "[").replace(": &", ": &") + "}"
    with pytest.raises(ConfigError, match="--set model.kwargs: more than"):
        parse_sets([f"model.kwargs={value}"])

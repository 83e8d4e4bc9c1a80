"""Trial identity: ids written by earlier versions stay valid, a new config field at its default
changes no id, and file-based data counts by its contents, not its folder's name."""

from __future__ import annotations

import shutil

import pytest
from pydantic import Field

from tort_core.config import DataConfig, RunConfig, build_config, known_keys, runtime_keys
from tort_core.identity import V1_KEYS, data_fingerprint, dataset_folder, forget_fingerprints

# Ids computed by the first version of the identity scheme (before any field was added to it):
# every store written since holds them; changing one re-runs those trials in every store.
# sota's changed once, deliberately: its cc8a485d91fb trained with the head's dropout applied twice
# and none in the blocks, which no config computes any more (model.dropout_at: blocks, fidelity.md).
SOTA_DOUBLED_HEAD_DROPOUT = "cc8a485d91fb"
GOLDEN = [
    (("tort", "demo", {}), "19916c46f1ba"),
    (("sota", "demo", {}), "c27ff8a07706"),
    (("tort", "demo", {"seed": 3, "loss.teacher_temp": 0.06}), "506d0453698d"),
    (("tort", "thesis", {"data.dataset": "digits"}), "97575017560c"),
    (("tort", "demo", {"compile": True, "compile_random": "fused"}), "045f621c2fd5"),
    (("tort", "demo", {"loss.enabled": ["distill", "supervised", "rotation", "region"]}), "58c36d48bed9"),
]


@pytest.mark.parametrize("args,expected", GOLDEN, ids=[g[1] for g in GOLDEN])
def test_golden_ids(args, expected):
    recipe, profile, overrides = args
    assert build_config(recipe, profile, overrides=overrides).content_hash() == expected


def test_runtime_settings_never_change_an_id():
    base = build_config("tort", "demo")
    changed = build_config("tort", "demo", overrides={"device": "cpu", "data.num_workers": 3, "checkpoint_every": 2,
                                                      "eval.cache": "off", "optim.fused": "off"})
    assert base.content_hash() == changed.content_hash()
    assert {"device", "data.root", "data.num_workers", "views.augment_on", "optim.fused"} <= runtime_keys()


class _ExtendedData(DataConfig):
    new_knob: float = Field(0.25, description="a field added after the store was written")


class _Extended(RunConfig):
    new_switch: bool = False
    data: _ExtendedData = Field(default_factory=_ExtendedData)


def test_a_field_added_with_its_default_changes_no_id_and_setting_it_does():
    for (recipe, profile, overrides), expected in GOLDEN:
        cfg = _Extended.model_validate(build_config(recipe, profile, overrides=overrides).model_dump())
        assert cfg.content_hash() == expected
    cfg = _Extended.model_validate(build_config("tort", "demo").model_dump())
    assert cfg.model_copy(update={"new_switch": True}).content_hash() != GOLDEN[0][1]
    cfg.data.new_knob = 0.5
    assert cfg.content_hash() != GOLDEN[0][1]


def test_the_v1_key_list_is_frozen_and_covers_only_fields_that_exist():
    # Removing a field would silently change ids; adding one must not touch V1_KEYS.
    assert V1_KEYS <= set(known_keys()) and len(V1_KEYS) == 83
    assert "data.fingerprint" not in V1_KEYS


def _tree(root, files: dict[str, int]):
    for rel, size in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x" * size)
    return root


def test_two_image_folders_with_one_name_get_different_ids(tmp_path):
    a = _tree(tmp_path / "A" / "flowers", {"train/rose/1.jpg": 10, "train/tulip/2.jpg": 20, "test/rose/3.jpg": 5})
    b = _tree(tmp_path / "B" / "flowers", {"train/rose/1.jpg": 10, "train/daisy/2.jpg": 20, "test/rose/3.jpg": 5})
    ids = [build_config("tort", "demo", overrides={"data.dataset": "imagefolder", "data.root": str(r)}).content_hash()
           for r in (a, b)]
    assert ids[0] != ids[1]  # one folder name, other classes: other data
    # The same tree elsewhere (another machine's path) is the same data, hence the same id.
    c = tmp_path / "C" / "flowers"
    shutil.copytree(a, c)
    (c / ".cache").write_text("hidden files are not the data")
    same = build_config("tort", "demo", overrides={"data.dataset": "imagefolder", "data.root": str(c)})
    assert same.content_hash() == ids[0] and same.data.fingerprint.startswith("3:")


def test_a_torchvision_root_counts_only_its_own_dataset_folder(tmp_path):
    root = _tree(tmp_path / "data", {"flowers-102/jpg/image_00001.jpg": 7, "flowers-102/setid.mat": 3})
    assert dataset_folder("flowers102", root) == root / "flowers-102"
    before = data_fingerprint("flowers102", root)
    _tree(root, {"oxford-iiit-pet/images/a.jpg": 9})  # another dataset beside it
    forget_fingerprints()
    assert data_fingerprint("flowers102", root) == before
    _tree(root, {"flowers-102/jpg/image_00002.jpg": 7})
    forget_fingerprints()
    assert data_fingerprint("flowers102", root) != before
    assert data_fingerprint("digits", root) is None and data_fingerprint("flowers102", tmp_path / "none") is None

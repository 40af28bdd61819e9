"""Search spaces: YAML parsing, validation messages, resolution against the dataset."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mtnas.core import ConfigError, MtnasError
from mtnas.nn import ConvLayer
from mtnas.search import check_search_space
from mtnas.space import BUILTIN_DIR, list_spaces, load_resolved, load_space, space_from_dict
from tests._spaces import load_builtin

BUILTINS = sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def _base() -> dict:
    return yaml.safe_load((BUILTIN_DIR / "digit_gratings.yaml").read_text())


@pytest.mark.parametrize("name", BUILTINS)
def test_every_builtin_space_parses_and_resolves(name: str) -> None:
    space, bundle = load_builtin(name)
    assert space.is_resolved
    assert space.name == name
    assert space.input_shape == bundle.input_shape
    assert all(t.kind and t.num_outputs and t.head and t.loss and t.metrics for t in space.tasks)


def test_builtins_are_listed_with_a_description() -> None:
    listed = dict(list_spaces())
    assert {"multi_digits", "digit_gratings", "synth_scenes"} <= set(listed)
    assert all(desc for desc in listed.values())


def test_layers_parse_into_the_backbone_layer_type() -> None:
    space = load_space("digit_gratings")
    assert all(isinstance(layer, ConvLayer) for layer in space.backbone.layers)
    assert [layer.stride for layer in space.backbone.layers] == [1, 2, 1, 2]


def test_unknown_key_names_path_and_suggests() -> None:
    data = _base()
    data["trainig"] = data.pop("training")
    with pytest.raises(ConfigError, match=r"unknown key 'trainig' \(did you mean 'training'\?\)"):
        space_from_dict(data)


def test_nested_unknown_key_names_the_full_path() -> None:
    data = _base()
    data["backbone"]["layers"][2]["strid"] = 2
    with pytest.raises(ConfigError, match=r"backbone\.layers\[2\]: unknown key 'strid' \(did you mean 'stride'\?\)"):
        space_from_dict(data, "space")


def test_a_renamed_key_is_refused_with_one_line_naming_the_new_one() -> None:
    data = _base()
    data["search"]["grouping_epochs"] = 3
    with pytest.raises(ConfigError) as err:
        space_from_dict(data, "space")
    assert str(err.value) == ("space.search: key 'grouping_epochs' is now 'short_epochs' (it sets the same); "
                              "rename it to space.search.short_epochs")
    data["search"]["short_epochs"] = data["search"].pop("grouping_epochs")
    space = space_from_dict(data, "space")
    assert space.search.short_epochs == space.short_epochs == 3


def test_wrong_type_names_path_expected_and_got() -> None:
    data = _base()
    data["training"]["epochs"] = "ten"
    with pytest.raises(ConfigError, match=r"space\.training\.epochs: expected int, got 'ten'"):
        space_from_dict(data, "space")


def test_out_of_range_value() -> None:
    data = _base()
    data["training"]["lr"] = -1
    with pytest.raises(ConfigError, match=r"training\.lr: must be > 0.0, got -1"):
        space_from_dict(data)


def test_literal_choice_suggests() -> None:
    data = _base()
    data["training"]["optimizer"] = "adamm"
    with pytest.raises(ConfigError, match=r"optimizer: expected one of .* \(did you mean 'adam'"):
        space_from_dict(data)


def test_unknown_backbone_lists_valid_ones() -> None:
    data = _base()
    data["backbone"]["name"] = "convv"
    with pytest.raises(ConfigError, match=r"unknown backbone 'convv' \(did you mean 'conv'\?\); valid: conv, mlp, resnet"):
        space_from_dict(data)


def test_max_branches_per_layer_must_match_layers() -> None:
    data = _base()
    data["routing"]["max_branches"] = [2, 2]
    with pytest.raises(ConfigError, match="2 values for 4 layers"):
        space_from_dict(data)
    data["routing"]["max_branches"] = [1, 2, 3, 4]
    assert space_from_dict(data).branches_per_layer == (1, 2, 3, 4)


def test_unknown_task_is_reported_on_resolve(tmp_path: Path) -> None:
    data = _base()
    data["tasks"][0] = "digits"
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(MtnasError, match=r"tasks\[0\] \(digits\): the dataset has no task 'digits' \(did you mean 'digit'\?\)"):
        load_resolved(path)


def test_head_that_does_not_fit_the_kind(tmp_path: Path) -> None:
    data = _base()
    data["tasks"][0] = {"name": "digit", "head": "conv1x1"}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(MtnasError, match=r"tasks\[0\] \(digit\): head 'conv1x1' does not serve classification tasks; valid: linear, mlp"):
        load_resolved(path)


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("dataset:\n  name: [unclosed\nbackbone: x\n")
    with pytest.raises(MtnasError, match=r"bad\.yaml: line \d+, column \d+: malformed YAML"):
        load_space(path)


def test_unknown_space_name_suggests_builtin() -> None:
    with pytest.raises(MtnasError, match=r"not a built-in \(did you mean 'digit_gratings'\?\)"):
        load_space("digit_grating")


def test_resolved_space_round_trips_through_plain_data() -> None:
    space, _ = load_resolved("synth_scenes")
    again = space_from_dict(space.to_dict())
    assert again == space
    assert again.content_hash == space.content_hash


def test_unknown_search_method_is_a_config_error() -> None:
    data = _base()
    data["search"]["method"] = "afinity"
    space = space_from_dict(data)  # the schema does not know the search's methods ...
    with pytest.raises(ConfigError, match=r"search\.method: unknown search method 'afinity' \(did you mean 'affinity'\?\)"):
        check_search_space(space)  # ... the search checks them before it starts

"""Config: defaults, YAML files, --set overrides, and one clear error per bad field."""
import pytest
import yaml

from deeprecipe.augment import parse_op
from deeprecipe.config import Config, apply_overrides, build_config, resolve_config
from deeprecipe.errors import DeepRecipeError
from deeprecipe.experiments.registry import get_experiment
from deeprecipe.models import create_model


def test_defaults_are_the_documented_ones():
    cfg = Config()
    assert cfg.data.spec == "builtin:mnist5k"
    assert cfg.model.name == "convnet"
    assert cfg.train.epochs >= 1 and cfg.train.batch_size is None  # chosen per training set (train/budget.py)


def test_yaml_then_overrides_win(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump({"optim": {"lr": 0.5, "name": "sgd"}, "train": {"epochs": 3}}))
    cfg = resolve_config(str(f), ["optim.lr=0.01", "model.widths=[8,16]", "data.augment=[hflip, 'translate:4']"])
    assert cfg.optim.lr == 0.01 and cfg.optim.name == "sgd" and cfg.train.epochs == 3
    assert cfg.model.knobs()["widths"] == [8, 16]
    assert cfg.data.augment == ["hflip", "translate:4"]


def test_resolved_config_round_trips_through_yaml():
    cfg = resolve_config(None, ["optim.lr=0.02", "model.dropout=0.1"])
    again = build_config(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg


@pytest.mark.parametrize("override, key", [
    ("optim.lrr=1", "optim.lrr"),
    ("train.batch_size=0", "train.batch_size"),
    ("optim.lr=-1", "optim.lr"),
    ("train.epochs=abc", "train.epochs"),
    ("data.val_fraction=1.0", "data.val_fraction"),
    ("optim.name=adagradx", "optim.name"),
    ("bogus.key=1", "bogus"),
])
def test_bad_values_name_the_key(override, key):
    with pytest.raises(DeepRecipeError) as err:
        resolve_config(None, [override])
    assert key in str(err.value)


def test_fractions_must_leave_training_data():
    with pytest.raises(DeepRecipeError, match="val_fraction"):
        resolve_config(None, ["data.val_fraction=0.5", "data.test_fraction=0.5"])


def test_override_needs_section_and_equals():
    with pytest.raises(DeepRecipeError):
        apply_overrides({}, ["lr"])
    with pytest.raises(DeepRecipeError):
        apply_overrides({}, ["lr=1"])


def test_bad_yaml_file_is_named(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("optim: [unclosed\n")
    with pytest.raises(DeepRecipeError, match="bad.yaml"):
        resolve_config(str(f))
    with pytest.raises(DeepRecipeError, match="does not exist"):
        resolve_config(str(tmp_path / "missing.yaml"))


@pytest.mark.parametrize("override, suggestion", [
    ("optim.nme=sgd", "optim.name"),
    ("train.epoch=3", "train.epochs"),
    ("regularize.label_smothing=0.1", "regularize.label_smoothing"),
    ("optm.lr=0.1", "optim"),
    ("schedul.name=cosine", "schedule"),
])
def test_unknown_keys_and_sections_suggest_the_nearest(override, suggestion):
    with pytest.raises(DeepRecipeError) as err:
        resolve_config(None, [override])
    assert f"did you mean {suggestion}" in str(err.value)


def test_a_key_with_no_near_match_gets_the_list_instead():
    with pytest.raises(DeepRecipeError) as err:
        resolve_config(None, ["optim.zzzzzz=1"])
    assert "did you mean" not in str(err.value) and "momentum" in str(err.value)


@pytest.mark.parametrize("call, name, suggestion", [
    (create_model, "resnt18", "resnet18"), (parse_op, "brightnes", "brightness"),
    (get_experiment, "activation", "activations"),
])
def test_every_registry_suggests_through_the_same_helper(call, name, suggestion):
    with pytest.raises(DeepRecipeError) as err:
        call(name)
    assert err.value.fix.startswith(f"did you mean {suggestion}")

"""Config: defaults work, files load, a bad value is one clear line naming the field."""

import pytest

from schemas.config import ConfigError, CurationConfig, load_config


def test_defaults_are_valid_and_frozen():
    cfg = load_config()
    assert cfg == CurationConfig()
    with pytest.raises(Exception):
        cfg.select.budget = 3


def test_yaml_and_toml_and_overrides(tmp_path):
    (tmp_path / "c.yaml").write_text("select:\n  budget: 50\n")
    (tmp_path / "c.toml").write_text("[select]\nbudget = 60\n")
    assert load_config(tmp_path / "c.yaml").select.budget == 50
    assert load_config(tmp_path / "c.toml").select.budget == 60
    assert load_config(tmp_path / "c.toml", **{"select.budget": 7}).select.budget == 7


@pytest.mark.parametrize("text,field", [
    ("select:\n  budget: -1\n", "select.budget"),
    ("selcet:\n  budget: 5\n", "selcet"),
    ("ingest:\n  max_raw_chars: lots\n", "ingest.max_raw_chars"),
])
def test_bad_values_name_the_field(tmp_path, text, field):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert field in message and "\n" not in message


@pytest.mark.parametrize("text", ["select: [1, 2\n", "- a list\n"])
def test_broken_or_wrong_shaped_file(tmp_path, text):
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="broken.yaml"):
        load_config(path)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "none.yaml")

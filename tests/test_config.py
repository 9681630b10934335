from pathlib import Path

import pytest

from captcha_stream.config import Config, DataConfig, changed_on_resume, load_config
from captcha_stream.errors import CaptchaStreamError
from captcha_stream.model.crnn import check_fits

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "change, culprit",
    [
        (dict(charset=""), "data.charset"),
        (dict(charset="abca"), "'a' appears more than once"),
        (dict(min_length=6, max_length=5), "data.min_length"),
        (dict(min_length=0), "data.min_length"),
        (dict(fonts=["/nope/font.ttf"]), "/nope/font.ttf"),
        (dict(width=10), "data.width"),
        (dict(height=5), "data.height"),
        (dict(channels=2), "data.channels"),
        (dict(font_sizes=[]), "data.font_sizes"),
        (dict(augment=1.5), "data.augment: must be a probability"),
        (dict(augment=0.5, echo=2), "already jittered"),
    ],
)
def test_data_validation_names_field(change, culprit):
    with pytest.raises(CaptchaStreamError, match=culprit.replace("(", r"\(")) as exc:
        DataConfig(**change).validate()
    assert "\n" not in str(exc.value)


def test_yaml_unknown_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("data:\n  widht: 100\n")
    with pytest.raises(CaptchaStreamError, match=r"data\.widht.*valid keys: charset"):
        load_config(p)


def test_yaml_wrong_type(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  steps: lots\n")
    with pytest.raises(CaptchaStreamError, match=r"c\.yaml: train\.steps: expected an integer"):
        load_config(p)


def test_yaml_syntax_error(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("data: [1, 2\n")
    with pytest.raises(CaptchaStreamError, match="YAML syntax error at line"):
        load_config(p)


def test_missing_config_file(tmp_path):
    with pytest.raises(CaptchaStreamError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_overrides_and_round_trip(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("data:\n  width: 160\n  height: 60\n")
    cfg = load_config(p, {"train.steps": 10, "data.charset": "0123"})
    assert cfg.data.width == 160 and cfg.train.steps == 10 and cfg.data.charset == "0123"
    assert cfg.name == "c"
    from captcha_stream.config import config_from_dict

    assert config_from_dict(cfg.to_dict()) == cfg


def test_defaults_are_valid():
    Config().validate()
    assert (Config().data.width, Config().data.height) == (280, 90)


def test_exponent_without_dot_is_a_number(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("optim:\n  lr: 3e-4\n")
    assert load_config(p, {"optim.weight_decay": "1e-2"}).optim.lr == 3e-4


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")))
def test_shipped_configs_load_and_fit_their_model(path):
    cfg = load_config(path)
    check_fits(cfg.data, cfg.model)
    assert cfg.name == path.stem


def test_focus_symbols_weights():
    from captcha_stream.config import Config

    cfg = Config()
    assert cfg.symbol_weights() is None  # the default keeps the uniform draws
    cfg.train.focus_symbols = "0Ov"
    cfg.train.focus_weight = 1.0
    assert cfg.symbol_weights() is None
    cfg.train.focus_weight = 3.0
    cfg.validate(check_files=False)
    weights = cfg.symbol_weights()
    assert [w for ch, w in zip(cfg.data.charset, weights) if w != 1.0] == [3.0, 3.0, 3.0]
    assert {ch for ch, w in zip(cfg.data.charset, weights) if w == 3.0} == set("0Ov")


def test_changed_on_resume_names_only_settings_that_change_training():
    saved = {"train": {"seed": 1, "steps": 10, "log_every": 5}, "optim": {"lr": 0.001}, "eval": {"val_size": 8}}
    overrides = {"train.seed": 1, "train.log_every": 1, "eval.val_size": 4, "optim.lr": 0.01, "train.steps": 20}
    assert changed_on_resume(saved, overrides) == ["optim.lr 0.001 -> 0.01", "train.steps 10 -> 20"]
    # A key the old checkpoint never saved counts as changed: its old value is unknown.
    assert changed_on_resume(saved, {"train.focus_weight": 4}) == ["train.focus_weight None -> 4"]

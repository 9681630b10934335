"""`captcha-stream audit` on a tiny scheme and recipe: the report's JSON has the times to each level,
and its page is one self-contained file that parses."""

import json
from html.parser import HTMLParser

import pytest

from captcha_stream.cli import audit_main, run
from captcha_stream.errors import CaptchaStreamError

SCHEME = "data: {width: 64, height: 32, min_length: 2, max_length: 3, charset: '0123456789', font_sizes: [24, 28]}\n"
RECIPE = """
model: {cnn_channels: [8, 16], width_pools: 1, rnn: gru, rnn_hidden: 32}
optim: {lr: 0.003, warmup_steps: 5}
train: {batch_size: 8, num_workers: 0, log_every: 5, checkpoint_every: 20}
eval: {batch_size: 32, bn_refresh: 64}
"""
SMALL = ["--set", "eval.val_size=24", "--set", "eval.test_size=24"]


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"])


@pytest.fixture
def files(tmp_path):
    (tmp_path / "scheme.yaml").write_text(SCHEME)
    (tmp_path / "quiet.yaml").write_text(SCHEME.rstrip("}\n") + ", noise_dots: 0, noise_curve: false}\n")
    (tmp_path / "recipe.yaml").write_text(RECIPE)
    return tmp_path


def test_an_audit_writes_a_report_with_times_to_accuracy(files, capsys):
    out = files / "audit"
    argv = ["--config", str(files / "scheme.yaml"), "--steps", "40", "--out", str(out), "--no-progress"]
    with pytest.raises(SystemExit) as exc:
        run(audit_main, [*argv, "--recipe", str(files / "recipe.yaml"), *SMALL])
    assert exc.value.code == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert set(report["time_to"]) == {"50%", "80%", "90%", "95%", "98%", "99%"}
    assert len(report["curve"]) >= 4 and report["trained"]["steps"] == 40
    assert report["test"]["n"] == 24 and 0 <= report["test"]["full_string_accuracy"] <= 1
    assert report["test"]["decoding"] == "greedy"  # the recipe's reading, said beside its numbers
    assert "read once at the end: greedy" in (out / "report.html").read_text()
    assert {r["symbol"] for r in report["per_symbol"]} <= set("0123456789")
    assert set(report["by_length"]) <= {"2", "3"} and report["machine"]["torch"]
    assert report["verdict"].startswith("A reader trained from nothing on")
    page = Page()
    page.feed((out / "report.html").read_text())
    assert "table" in page.tags and len(page.images) == 2
    assert all(src.startswith("data:image/png;base64,") for src in page.images)  # self-contained
    assert (out / "curve.png").stat().st_size > 1000 and (out / "hardest.png").stat().st_size > 1000
    assert "report:" in capsys.readouterr().out


def test_compare_puts_schemes_on_one_chart(files, capsys):
    out = files / "cmp"
    argv = ["--compare", str(files / "scheme.yaml"), str(files / "quiet.yaml"), "--steps", "20", "--out", str(out)]
    with pytest.raises(SystemExit) as exc:
        run(audit_main, [*argv, "--recipe", str(files / "recipe.yaml"), "--no-progress", *SMALL])
    assert exc.value.code == 0, capsys.readouterr().err
    summary = json.loads((out / "compare.json").read_text())
    assert set(summary) == {"scheme", "quiet"} and (out / "quiet" / "report.html").exists()
    assert (out / "compare.png").exists() and "quiet/report.html" in (out / "compare.html").read_text()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--out", "x", "--steps", "3"], "give a scheme with --config"),
        (["--config", "s.yaml", "--out", "x"], "give a budget"),
        (["--config", "s.yaml", "--out", "x", "--minutes", "-1"], "--minutes: must be a positive"),
        (["--config", "s.yaml", "--out", "x", "--minutes", "1", "--steps", "3"], "give a budget"),
        (["--config", "s.yaml", "--out", "x", "--steps", "3", "--points", "0"], "--points: must be a number"),
    ],
)
def test_bad_audit_arguments(argv, message):
    with pytest.raises(CaptchaStreamError, match=message):
        audit_main(argv)


def test_points_set_how_often_the_budget_is_validated(files):
    from captcha_stream.audit.run import Budget, recipe_config

    scheme, recipe = files / "scheme.yaml", str(files / "recipe.yaml")
    cfg, _ = recipe_config(scheme, Budget(steps=40, points=4), files / "a", recipe, {})
    assert cfg.train.eval_every == 10 and cfg.train.minutes == 0
    cfg, _ = recipe_config(scheme, Budget(minutes=12, points=24), files / "b", recipe, {})
    assert cfg.train.eval_minutes == 0.5 and cfg.train.minutes == 12
    cfg, _ = recipe_config(scheme, Budget(minutes=12), files / "c", recipe, {})
    assert cfg.train.eval_minutes == 1.2  # ten points unless told


def test_verdict_reads_as_plain_words():
    from captcha_stream.audit.report import verdict

    report = {
        "machine": {"gpu": None, "cores": 2},
        "trained": {"minutes": 10.0, "steps": 4000},
        "time_to": {"50%": {"minutes": 1.0, "images": 12576}, "90%": {"minutes": 2.5, "images": 30000}},
        "curve": [[0.4, 3000, 100, 0.0], [1.0, 12576, 400, 0.6], [2.5, 30000, 900, 0.93]],
        "test": {"full_string_accuracy": 0.996, "char_accuracy": 0.999},
        "per_symbol": [{"symbol": "7", "n": 900, "error_rate": 0.01}],
        "confused_pairs": [{"truth": "7", "read": "1", "count": 3}],
    }
    text = verdict(report)
    assert text.startswith("A reader trained from nothing on 2 CPU cores for 10 minutes reads 99.6%")
    assert "after 1 minute (12,576 images) and 90% after 2.5 minutes" in text
    assert "broken within 1 minute." in text
    assert "worst: 7; most often confused: 7→1." in text
    # Only one level reached: said once.
    report["time_to"] = {"50%": {"minutes": 5.0, "images": 42560}, "90%": None}
    text = verdict(report)
    assert "50% of the validation set after 5 minutes (42,560 images)." in text and " and 50%" not in text


def test_an_audit_splits_its_recipe_across_processes_as_training_does(files, capsys):
    """A recipe with train.processes trains its audit in that many ranks, the budget and the report as
    in one process; the ranks read the audit's composed config from the folder."""
    recipe = files / "split.yaml"
    recipe.write_text(RECIPE.replace("train: {", "train: {processes: 2, "))
    out = files / "split-audit"
    argv = ["--config", str(files / "scheme.yaml"), "--steps", "20", "--out", str(out), "--no-progress"]
    with pytest.raises(SystemExit) as exc:
        run(audit_main, [*argv, "--recipe", str(recipe), *SMALL])
    assert exc.value.code == 0, capsys.readouterr().err
    start = json.loads((out / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert start["world_size"] == 2 and start["global_batch"] == 8
    assert len(start["first_labels"]) == 2 and start["first_labels"][0] != start["first_labels"][1]
    report = json.loads((out / "report.json").read_text())
    assert report["trained"]["steps"] == 20 and report["trained"]["minutes"] > 0
    assert report["test"]["n"] == 24 and report["name"] == "scheme"
    written = (out / "recipe.yaml").read_text()
    assert "processes: 2" in written and "width: 64" in written  # the recipe with the scheme's data


def test_an_audit_whose_ranks_fail_says_so_and_writes_no_report(files, capfd):
    recipe = files / "split.yaml"
    recipe.write_text(RECIPE.replace("train: {", "train: {processes: 2, "))
    out = files / "failed-audit"
    out.mkdir()
    (out / "val").write_text("not a folder of captchas")  # met by the ranks, once they run
    argv = ["--config", str(files / "scheme.yaml"), "--steps", "20", "--out", str(out), "--no-progress"]
    with pytest.raises(SystemExit) as exc:
        run(audit_main, [*argv, "--recipe", str(recipe), *SMALL])
    err = capfd.readouterr().err  # the ranks write to the terminal's stderr themselves
    assert exc.value.code == 2 and "Traceback" not in err
    assert str(out / "val") in err  # the rank's own one line says what
    assert f"{out}: the audit's training ended with exit status 2; no report written" in err
    assert not (out / "report.json").exists()

"""docs/zero_o_second_stage.py: peaks of a greedy CTC reading, and the second look on a folder."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "docs" / "zero_o_second_stage.py"


@pytest.fixture(scope="module")
def stage():
    spec = importlib.util.spec_from_file_location("zero_o_second_stage", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def log_probs(path, peaks, classes=4):
    """(T, C) log-probabilities following `path` (one id per frame), with the frames in `peaks` surer."""
    lp = np.full((len(path), classes), -9.0)
    for t, i in enumerate(path):
        lp[t, i] = -0.001 if t in peaks else -0.5
    return lp


def test_emissions_collapse_runs_and_take_each_runs_surest_frame(stage):
    # 3 3 _ 3 2 2 _ reads "3 3 2": a blank separates the repeated 3, and the run of 2 peaks at frame 5.
    lp = log_probs([0, 3, 3, 0, 3, 2, 2, 0], peaks={2, 5})
    assert stage.emissions(lp) == [(3, 2), (3, 4), (2, 5)]
    assert stage.emissions(log_probs([0, 0, 0], peaks=set())) == []


def test_frame_x_is_the_middle_of_the_frame(stage):
    assert stage.frame_x(0, 22, 176) == 4.0
    assert stage.frame_x(21, 22, 176) == 172.0


@pytest.fixture(scope="module")
def small_set(tmp_path_factory, stage):
    from captcha_stream.export import export_set

    out = tmp_path_factory.mktemp("sets") / "classic36"
    return export_set(out, 24, stage.ceiling.CLASSIC36, seed=8, workers=1, progress=False, log=lambda s: None)


def test_second_look_changes_only_zeros_and_ohs_before_the_last_character(stage, small_set, tmp_path):
    from captcha_stream.folder import FolderDataset
    from captcha_stream.predict import Recognizer

    reader = Recognizer.from_checkpoint(ROOT / "models" / "classic36.pt")
    dataset = FolderDataset(small_set, reader.cfg.data)
    texts = [p.text for p in reader.predict([str(dataset.path(i)) for i in range(len(dataset))])]
    labels = [label for _, label in dataset.rows]
    # A classifier that always answers O: every 0 it looks at becomes an O.
    always_oh = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(stage.ceiling.CROP_H * stage.ceiling.CROP_W, 2))
    torch.nn.init.zeros_(always_oh[1].weight)
    always_oh[1].bias.data = torch.tensor([-1.0, 1.0])
    counts, readings = stage.second_look(reader, always_oh, str(small_set))
    assert counts["reader"]["wrong strings"] == sum(t != y for t, y in zip(texts, labels))
    assert readings["reader"] == texts
    looked = 0
    for plain, second in zip(texts, readings["classifier"]):
        expected = "".join("O" if c == "0" and i < len(plain) - 1 else c for i, c in enumerate(plain))
        assert second == expected
        looked += sum(c in "0O" for c in plain[:-1])
    assert counts["classifier"]["0/O looked at"] == looked
    assert counts["reader"]["right only this way"] == counts["reader"]["right only by the reader"] == 0
    second = readings["classifier"]
    by = counts["classifier"]
    assert by["right only this way"] == sum(b == y != a for a, b, y in zip(texts, second, labels))
    assert by["right only by the reader"] == sum(a == y != b for a, b, y in zip(texts, second, labels))


def test_missing_classifier_gets_one_line():
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--reader", "models/classic36.pt", "--classifier", "nope.pt", "--data", "x"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode != 0
    assert "nope.pt: classifier weights not found" in done.stderr.strip().splitlines()[-1]
    assert "Traceback" not in done.stderr

"""experiments/zero_o_second_stage.py: the three ways of reading 0/O, and the summed one as the package reads it."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "experiments" / "zero_o_second_stage.py"


@pytest.fixture(scope="module")
def stage(docs_script):
    return docs_script("zero_o_second_stage")


def test_the_summed_way_reads_as_the_packages_second_look(stage, classic36_set, tmp_path):
    from captcha_stream.checkpoint import load_checkpoint, save_checkpoint
    from captcha_stream.data.folder import FolderDataset
    from captcha_stream.model.glyph_classifier import glyph_classifier
    from captcha_stream.reader.recognizer import Recognizer
    from captcha_stream.reader.second_look import attach

    # A random classifier with its answers scaled up: sure of itself, right or wrong, so the sum
    # of the two opinions goes sometimes one way, sometimes the other.
    torch.manual_seed(0)
    classifier = glyph_classifier().eval()
    classifier[-1].weight.data *= 2000
    shipped = Recognizer.from_checkpoint(ROOT / "models" / "classic36.pt")
    reader = Recognizer(getattr(shipped.model, "reader", shipped.model), shipped.cfg)  # without its second look
    counts, readings = stage.second_look(reader, classifier, str(classic36_set))
    assert readings["reader"] == [p.text for p in reader.predict(sorted_paths(classic36_set, reader))]
    assert counts["reader"]["right only this way"] == counts["reader"]["right only by the reader"] == 0
    assert readings["sum"] != readings["reader"]

    path = tmp_path / "look.pt"
    reader_state = load_checkpoint(ROOT / "models" / "classic36.pt")
    state = attach(reader_state, classifier.state_dict(), "0O", stage.PEAK_TO_CENTRE, stage.LAST_GAP)
    save_checkpoint(state, path, keep_previous=False)
    looked = Recognizer.from_checkpoint(path)
    assert [p.text for p in looked.predict(sorted_paths(classic36_set, looked))] == readings["sum"]

    labels = [label for _, label in FolderDataset(classic36_set, reader.cfg.data).rows]
    by = counts["sum"]
    assert by["right only this way"] == sum(b == y != a for a, b, y in zip(readings["reader"], readings["sum"], labels))
    assert by["right only by the reader"] == sum(
        a == y != b for a, b, y in zip(readings["reader"], readings["sum"], labels)
    )


def sorted_paths(folder, reader):
    from captcha_stream.data.folder import FolderDataset

    dataset = FolderDataset(folder, reader.cfg.data)
    return [str(dataset.path(i)) for i in range(len(dataset))]


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

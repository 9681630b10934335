import json

import pytest
from PIL import Image

from captcha_stream.cli import plot_main, run
from captcha_stream.eval.plot import SERIES

KEYS = ("full_string_accuracy", "char_accuracy", "case_insensitive_accuracy")


def write_run(folder, accuracies):
    folder.mkdir()
    lines = []
    for i, acc in enumerate(accuracies, 1):
        lines.append({"step": i * 100, "loss": 1.0 / i, "lr": 0.001})
        lines.append({"step": i * 100, "eval": {k: acc for k in KEYS}})
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return folder


def colors(path):
    with Image.open(path) as img:
        return {c for _, c in img.convert("RGB").getcolors(1 << 20)}


def test_comparison_draws_one_line_per_run(tmp_path, capsys):
    a = write_run(tmp_path / "a", [0.1, 0.5, 0.8])
    b = write_run(tmp_path / "b", [0.2, 0.6, 0.9])
    out = tmp_path / "cmp.png"
    assert plot_main([f"baseline={a}", str(b / "metrics.jsonl"), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    with Image.open(out) as img:
        assert img.size == (900, 330 + 2 * 16)  # a legend row per run, under the plots
    drawn = colors(out)
    assert SERIES[0] in drawn and SERIES[1] in drawn and SERIES[2] not in drawn


def test_single_run_still_draws_its_curve(tmp_path):
    run_dir = write_run(tmp_path / "a", [0.1, 0.5])
    assert plot_main([str(run_dir)]) == 0
    assert (run_dir / "curve.png").is_file()


@pytest.mark.parametrize(
    "argv, culprit",
    [
        (["{a}", "{b}"], "--out: needed"),
        (["{a}", "{tmp}/nothing", "--out", "{tmp}/x.png"], "nothing: no metrics.jsonl"),
    ],
)
def test_plot_bad_input_is_one_line(tmp_path, capsys, argv, culprit):
    a = write_run(tmp_path / "a", [0.1])
    b = write_run(tmp_path / "b", [0.2])
    argv = [x.format(a=a, b=b, tmp=tmp_path) for x in argv]
    with pytest.raises(SystemExit) as exc:
        run(plot_main, argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert culprit in err and "\n" not in err

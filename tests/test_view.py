"""--sheet: the mistakes-first PNG picture."""

import pytest
from PIL import Image

from captcha_stream.eval.view import write_sheet

RED, GREEN = (224, 102, 102), (205, 229, 205)


@pytest.fixture
def images(tmp_path):
    paths = []
    for i in range(5):
        p = tmp_path / f"{i}.png"
        Image.new("RGB", (60, 20), (40 * i, 100, 100)).save(p)
        paths.append(p)
    return paths


def tile_border(sheet, k, columns=2):
    # Cells start at x = 8 + column * (60 + 16), below a 56-pixel header; the border is 3 pixels wide.
    cell_h = 20 + 2 * 24 + 16
    return sheet.getpixel((8 + (k % columns) * 76 + 1, 56 + (k // columns) * cell_h + 1))


def test_sheet_puts_mistakes_first_and_writes_atomically(tmp_path, images):
    labels = ["ab", "cd", "ef", "gh", "ij"]
    preds = ["ab", "cd", "eF", "gh", "i"]
    out = write_sheet(tmp_path / "sheet.png", images, labels, preds, "t", count=3, columns=2)
    sheet = Image.open(out).convert("RGB")
    assert sheet.size == (2 * 76 + 8, 56 + 2 * 84 + 8)
    # Images 2 and 4 are wrong: they come first (red), then image 0 (green); 1 and 3 are left off.
    assert [tile_border(sheet, k) for k in range(3)] == [RED, RED, GREEN]
    assert sheet.getpixel((8 + 4 + 10, 56 + 4 + 10)) == images_color(images[2])
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name[0].isdigit()) == ["sheet.png"]


def images_color(path):
    return Image.open(path).convert("RGB").getpixel((0, 0))


def test_sheet_rejects_an_empty_request(tmp_path, images):
    with pytest.raises(ValueError, match="count and columns must be >= 1"):
        write_sheet(tmp_path / "s.png", images, ["a"] * 5, ["a"] * 5, "t", count=0)


def test_page_and_sheet_mark_the_aligned_differences():
    from captcha_stream.eval.view import _marked, _marks

    assert _marks("aXcde", "abcd") == [("a", "ok"), ("X", "sub"), ("c", "ok"), ("d", "ok"), ("e", "extra")]
    assert _marks("ab", "abcd") == [("a", "ok"), ("b", "ok"), ("_", "gap"), ("_", "gap")]
    # One dropped character is one gap, not the rest of the string marked wrong.
    marks = _marks("SQKNpLY", "SQKKNpLY")
    assert [kind for _, kind in marks].count("gap") == 1 and {kind for _, kind in marks} == {"ok", "gap"}
    assert _marked("SQKNpLY", "SQKKNpLY") == 'SQ<span class="gap">_</span>KNpLY'  # either K may be the gap
    assert _marked("abXc", "abc") == 'ab<span class="extra">X</span>c'
    assert _marked("a<", "ab") == 'a<span class="bad">&lt;</span>'
    assert _marked("", "") == '<span class="bad">(empty)</span>'


def test_a_large_set_puts_its_images_beside_the_page(tmp_path, images, monkeypatch):
    from captcha_stream.eval import view

    labels, preds = ["ab"] * len(images), ["ab", "aX", "ab", "b", "ab"][: len(images)]
    small = view.write_view(tmp_path / "small.html", images, labels, preds, [0.9] * len(images), "t")
    assert small.read_text().count("data:image/png;base64,") == len(images)
    assert not (tmp_path / "small_files").exists()
    monkeypatch.setattr(view, "INLINE_LIMIT", 2)
    big = view.write_view(tmp_path / "big.html", images, labels, preds, [0.9] * len(images), "t")
    page = big.read_text()
    assert "data:image" not in page and len(list((tmp_path / "big_files").iterdir())) == len(images)
    assert 'src="big_files/000000.png"' in page
    # Sorting and filtering controls, with the confused pair on the card that has it.
    assert "least confident first" in page and '<option value="b&gt;X">b read as X (1)</option>' in page
    assert 'data-pairs="b&gt;X"' in page

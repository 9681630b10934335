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


def test_page_and_sheet_mark_the_same_characters():
    from captcha_stream.eval.view import _marked, _marks

    assert _marks("aXcde", "abcd") == [("a", False), ("X", True), ("c", False), ("d", False), ("e", True)]
    assert _marks("ab", "abcd") == [("a", False), ("b", False), ("_", True), ("_", True)]
    assert _marked("a<", "ab") == 'a<span class="bad">&lt;</span>'
    assert _marked("", "") == '<span class="bad">(empty)</span>'

import pytest
from PIL import Image

from captcha_stream.config import DataConfig
from captcha_stream.data.folder import FolderDataset
from captcha_stream.errors import CaptchaStreamError

DATA = DataConfig(charset="abc123", width=160, height=60)


def make_set(root, rows, header=True, images=None):
    root.mkdir(parents=True, exist_ok=True)
    for name in images if images is not None else [r.split(",")[0] for r in rows]:
        Image.new("RGB", (160, 60), "white").save(root / name)
    text = ("filename,label\n" if header else "") + "".join(r + "\n" for r in rows)
    (root / "labels.csv").write_text(text)
    return root


def test_reads_exported_layout(tmp_path):
    root = make_set(tmp_path / "set", ["a.png,abc", "b.png,123"])
    ds = FolderDataset(root, DATA)
    assert len(ds) == 2
    img, label = ds[1]
    assert label == "123" and img.shape == (1, 60, 160)


def test_reads_original_layout(tmp_path):
    root = tmp_path / "Training_Data"
    root.mkdir()
    Image.new("L", (200, 50), 255).save(root / "x.png")
    (tmp_path / "Training_Data_Mappings.csv").write_text("x.png,ab1\n")
    ds = FolderDataset(root, DATA)
    img, label = ds[0]
    assert label == "ab1" and img.shape == (1, 60, 160)  # resized by the shared preprocessing


def test_explicit_labels_csv(tmp_path):
    root = make_set(tmp_path / "set", ["a.png,abc"])
    other = tmp_path / "other.csv"
    other.write_text("a.png,cab\n")
    assert FolderDataset(root, DATA, labels=other)[0][1] == "cab"


@pytest.mark.parametrize(
    "rows, images, message",
    [
        (["a.png,abc", "b.png,abc"], ["a.png"], r"b\.png: image file not found"),
        (["a.png,"], ["a.png"], r"labels\.csv:2: empty label for a\.png"),
        (["a.png,abz"], ["a.png"], r"labels\.csv:2: label 'abz': symbol 'z' is not in the charset"),
        (["a.png,abc", "a.png,abc"], ["a.png"], r"labels\.csv:3: duplicate filename a\.png"),
        (["a.png,abc,extra"], ["a.png"], r"labels\.csv:2: malformed row"),
        (["a.png"], ["a.png"], r"labels\.csv:2: malformed row"),
        ([], [], r"labels\.csv: no labelled rows"),
    ],
)
def test_csv_errors_name_the_file(tmp_path, rows, images, message):
    root = make_set(tmp_path / "set", rows, images=images)
    with pytest.raises(CaptchaStreamError, match=message) as exc:
        FolderDataset(root, DATA)
    assert "\n" not in str(exc.value)


def test_missing_csv(tmp_path):
    (tmp_path / "imgs").mkdir()
    with pytest.raises(CaptchaStreamError, match=r"imgs: no labels CSV found"):
        FolderDataset(tmp_path / "imgs", DATA)


def test_missing_folder(tmp_path):
    with pytest.raises(CaptchaStreamError, match="image folder not found"):
        FolderDataset(tmp_path / "nope", DATA)


def test_unreadable_and_empty_images(tmp_path):
    root = make_set(tmp_path / "set", ["a.png,abc"])
    (root / "a.png").write_bytes(b"not a png at all")
    ds = FolderDataset(root, DATA)
    with pytest.raises(CaptchaStreamError, match=r"a\.png: not a readable image"):
        ds[0]
    (root / "a.png").write_bytes(b"")
    with pytest.raises(CaptchaStreamError, match=r"a\.png: empty file"):
        FolderDataset(root, DATA)


@pytest.mark.parametrize("mode", ["RGBA", "P", "I;16", "LA", "1", "CMYK"])
def test_any_image_mode_is_converted(tmp_path, mode):
    root = tmp_path / "set"
    root.mkdir()
    Image.new(mode, (90, 30)).save(root / "a.tiff")
    (root / "labels.csv").write_text("a.tiff,abc\n")
    img, _ = FolderDataset(root, DATA)[0]
    assert img.shape == (1, 60, 160)

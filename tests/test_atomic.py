import pytest

from captcha_stream.atomic import replacing


def test_the_new_file_replaces_the_old_and_no_temporary_is_left(tmp_path):
    out = tmp_path / "report.json"
    out.write_text("old")
    with replacing(out) as tmp:
        assert tmp.parent == out.parent and tmp.name.startswith(".")
        tmp.write_text("new")
        assert out.read_text() == "old"  # not before the block ends
    assert out.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    out = tmp_path / "sheet.png"
    out.write_text("old")
    with pytest.raises(RuntimeError), replacing(out) as tmp:
        tmp.write_text("half")
        raise RuntimeError("the writer failed")
    assert out.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["sheet.png"]

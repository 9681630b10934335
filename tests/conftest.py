import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLASSIC36 = ROOT / "captcha_stream" / "weights" / "classic36.pt"
sys.path.insert(0, str(ROOT))
# Keep tests on one thread per process: the suite runs on 2 cores beside DataLoader workers.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def classic36_set(tmp_path_factory):
    """40 classic36 captchas exported with seed 8 (the second look's tests read them)."""
    from captcha_stream.config import load_config
    from captcha_stream.data.frozen import export_set

    data = load_config(ROOT / "configs" / "classic36.yaml").data
    out = tmp_path_factory.mktemp("sets") / "classic36"
    return export_set(out, 40, data, seed=8, workers=1, progress=False, log=lambda s: None)


@pytest.fixture(scope="session")
def classic36_reader(tmp_path_factory):
    """The shipped classic36 without its denoiser: the reader and its second look, for tests that add their own."""
    from captcha_stream.tools.slim import slim_checkpoint

    out = tmp_path_factory.mktemp("reader") / "classic36-reader.pt"
    return slim_checkpoint(CLASSIC36, out, without=["denoiser"])


@pytest.fixture(scope="session")
def read_folder():
    """read(checkpoint, folder) -> (the texts a checkpoint reads in a labelled folder, its Recognizer)."""
    from captcha_stream.data.folder import FolderDataset
    from captcha_stream.reader.recognizer import Recognizer

    def read(checkpoint, folder):
        reader = Recognizer.from_checkpoint(checkpoint)
        dataset = FolderDataset(folder, reader.cfg.data)
        return [p.text for p in reader.predict([str(dataset.path(i)) for i in range(len(dataset))])], reader

    return read


@pytest.fixture
def small_data():
    from captcha_stream.config import DataConfig

    return DataConfig(width=160, height=60, min_length=3, max_length=5)

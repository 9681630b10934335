import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Keep tests on one thread per process: the suite runs on 2 cores beside DataLoader workers.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def small_data():
    from captcha_stream.config import DataConfig

    return DataConfig(width=160, height=60, min_length=3, max_length=5)

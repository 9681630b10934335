"""The anti-aliased pool (model.blur_pool): same geometry as the plain pool, smoother under shifts."""

import pytest
import torch

from captcha_stream.config import load_config
from captcha_stream.model.crnn import CRNN, BlurPool
from captcha_stream.train.loop import train

from .test_train import smoke

CPU = "configs/cpu.yaml"


@pytest.mark.parametrize("height,width", [(45, 140), (23, 70), (12, 35), (7, 9)])
def test_it_keeps_the_plain_pools_output_size(height, width):
    x = torch.randn(2, 4, height, width)
    for pool in ((2, 2), (2, 1), (1, 2)):
        plain = torch.nn.MaxPool2d(pool, pool, ceil_mode=True)(x)
        assert BlurPool(4, pool)(x).shape == plain.shape


def test_a_one_pixel_shift_moves_its_output_less_than_a_strided_maxs():
    torch.manual_seed(0)
    # Thin vertical strokes at random columns: the case where a strided max flips between keeping
    # and dropping a stroke as the image moves by a pixel.
    x = torch.zeros(64, 1, 8, 64)
    for image in x:
        for column in torch.randint(2, 60, (6,)):
            image[0, :, column] = 1.0
    moved = torch.roll(x, 1, dims=3)
    plain = torch.nn.MaxPool2d(2, 2, ceil_mode=True)
    blur = BlurPool(1, (2, 2))

    def change(pool: torch.nn.Module) -> float:
        a, b = pool(x), pool(moved)
        return float(((a - b) ** 2).sum() / (a**2).sum())  # the change's share of the output's energy

    # A stroke's pooled response under the plain pool lands in another column half the time;
    # blurred, it spreads over neighbouring columns and shifts by half a sample.
    assert change(blur) < 0.6 * change(plain)  # measured 0.40 against 0.93


def test_a_blurred_model_has_the_plain_models_weights_and_trains(tmp_path):
    plain_cfg = load_config(CPU)
    blur_cfg = load_config(CPU, {"model.blur_pool": True})
    plain = CRNN(plain_cfg.data, plain_cfg.model, 63)
    blurred = CRNN(blur_cfg.data, blur_cfg.model, 63)
    # The blur is fixed, not learnt or saved: a checkpoint holds the same tensors with it on or off.
    assert {k: v.shape for k, v in plain.state_dict().items()} == {k: v.shape for k, v in blurred.state_dict().items()}
    kinds = [[type(m).__name__ for m in stage if "Pool" in type(m).__name__] for stage in blurred.features]
    # The stem's pool stays plain (blurred at full resolution it costs a quarter of a step); the
    # second stage's halves the width and is blurred; the later ones pool only the height.
    assert kinds == [["MaxPool2d"], ["BlurPool"], ["MaxPool2d"], ["MaxPool2d"]]
    images = torch.randint(0, 256, (2, 1, plain_cfg.data.height, plain_cfg.data.width), dtype=torch.uint8)
    assert blurred(images).shape == plain(images).shape
    # The smoke model's second stage halves the width only with width_pools 2.
    cfg = smoke(tmp_path, **{"train.steps": 3, "model.blur_pool": True, "model.width_pools": 2})
    assert any(isinstance(m, BlurPool) for m in CRNN(cfg.data, cfg.model, 11).modules())
    train(cfg, progress=False, log=lambda s: None)
    assert (tmp_path / "run" / "last.pt").exists()

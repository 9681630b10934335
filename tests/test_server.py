"""captcha-stream serve: a real server on 127.0.0.1, read by a real HTTP client (urllib)."""

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the [serve] extra is not installed: pip install -e '.[serve]'")
pytest.importorskip("uvicorn", reason="the [serve] extra is not installed: pip install -e '.[serve]'")

from captcha_stream.config import DataConfig  # noqa: E402
from captcha_stream.data.render import Renderer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(*args):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "captcha_stream", "serve", "--port", str(port), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as r:
                return proc, url, json.loads(r.read())
        except OSError:
            if proc.poll() is not None:
                raise AssertionError(proc.stderr.read()) from None
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("the server did not answer /health within 30 s")


@pytest.fixture(scope="module")
def server():
    proc, url, health = start("--max-bytes", "200000", "--max-pixels", "1000000")
    yield url, health
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def captchas(tmp_path_factory):
    """Two PNG-encoded captchas and their labels."""
    import io

    renderer, out = Renderer(DataConfig(), seed=3), []
    for _ in range(2):
        image, label = renderer.sample()
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        out.append((buf.getvalue(), label))
    return out


def post(url, body, content_type="application/octet-stream"):
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def multipart(files):
    boundary = uuid.uuid4().hex
    parts = []
    for name, data in files:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_health_names_the_model(server):
    _, health = server
    assert health == {"status": "ok", "model": "captcha62", "backend": "torch"}


def test_read_takes_a_raw_body_or_a_multipart_file(server, captchas):
    from captcha_stream.reader.recognizer import Recognizer

    url, _ = server
    data, _ = captchas[0]
    expected = Recognizer.from_pretrained("captcha62").predict_one(data)
    status, raw = post(url + "/read", data)
    assert status == 200 and raw == {"text": expected.text, "confidence": raw["confidence"], "model": "captcha62"}
    assert abs(raw["confidence"] - expected.confidence) < 1e-5
    status, form = post(url + "/read", *multipart([("image", data)]))
    assert status == 200 and form == raw


def test_batch_reads_each_file_and_reports_a_bad_one(server, captchas):
    url, _ = server
    (a, _), (b, _) = captchas
    status, out = post(url + "/read/batch", *multipart([("a.png", a), ("notes.txt", b"hello"), ("b.png", b)]))
    assert status == 200
    first, bad, second = out["results"]
    assert set(first) == set(second) == {"text", "confidence"}
    assert bad == {"name": "notes.txt", "error": "notes.txt: not a readable image (UnidentifiedImageError)"}
    assert post(url + "/read", a)[1]["text"] == first["text"]


@pytest.mark.parametrize(
    "body, status, message",
    [
        (b"", 400, "body: empty"),
        (b"not an image at all", 415, "body: not a readable image"),
        (b"\0" * 300_000, 413, "request of 300000 bytes is over the limit of 200000"),
    ],
)
def test_client_mistakes_get_4xx_json(server, body, status, message):
    url, _ = server
    got, out = post(url + "/read", body)
    assert got == status and out["error"].startswith(message)


def test_an_image_over_the_pixel_limit_is_refused_before_decoding(server):
    import io

    from PIL import Image

    url, _ = server
    buf = io.BytesIO()
    Image.new("L", (2000, 1000), 255).save(buf, format="PNG")  # small file, 2 M pixels
    status, out = post(url + "/read", buf.getvalue())
    assert status == 413 and out["error"] == "body: 2000x1000 is over the limit of 1000000 pixels"


def test_the_onnx_backend_answers_alike(captchas):
    pytest.importorskip("onnxruntime")
    proc, url, health = start("--backend", "onnx")
    try:
        assert health["backend"] == "onnx"
        data, _ = captchas[1]
        status, out = post(url + "/read", data)
        assert status == 200 and out["model"] == "captcha62"
    finally:
        proc.terminate()
        proc.wait(timeout=30)

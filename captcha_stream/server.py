"""An HTTP front end for one reader: `captcha-stream serve` (the [serve] extra: FastAPI and uvicorn).

    POST /read          one image, as the raw request body or a multipart file field
    POST /read/batch    several images as multipart file fields (any names, in order)
    GET  /health        {"status": "ok", "model": ..., "backend": ...}

A reading answers {"text", "confidence", "model"}; a batch answers {"results": [...], "model"} with
{"error": ...} in place of a reading for an image that cannot be read. Anything the client got
wrong is a 4xx JSON {"error": ...}: 400 for an empty body, 413 for a request over `max_bytes` or an
image over `max_pixels`, 415 for bytes that are not an image. Reading runs in the server's thread
pool (a Recognizer is safe to share between threads).
"""

import io
from typing import Any

# FastAPI reads the endpoints' annotations at run time: these names must be importable here, so the
# module itself needs the [serve] extra (only `captcha-stream serve` imports it).
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from .errors import CaptchaStreamError
from .reader.recognizer import Recognizer

MAX_BYTES = 2_000_000
MAX_PIXELS = 4_000_000
MAX_BATCH = 256


class RequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def decode(data: bytes, name: str, max_pixels: int) -> Any:
    """The image in `data`, checked for size before its pixels are decoded."""
    from PIL import Image

    if not data:
        raise RequestError(400, f"{name}: empty")
    try:
        image = Image.open(io.BytesIO(data))
        if image.width * image.height > max_pixels:
            raise RequestError(413, f"{name}: {image.width}x{image.height} is over the limit of {max_pixels} pixels")
        image.load()
    except RequestError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise RequestError(415, f"{name}: not a readable image ({exc.__class__.__name__})") from None
    return image


def create_app(reader: Recognizer, model: str, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS) -> FastAPI:
    app = FastAPI(title="captcha-stream", summary=f"reads captchas with {model}")

    @app.exception_handler(RequestError)
    async def request_error(_: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    async def body_of(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_bytes:
            raise RequestError(413, f"request of {declared} bytes is over the limit of {max_bytes}")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_bytes:
                raise RequestError(413, f"request is over the limit of {max_bytes} bytes")
        return bytes(body)

    async def uploads(request: Request) -> list[tuple[str, bytes]]:
        """(name, bytes) of each image in the request: multipart file fields, or the raw body."""
        body = await body_of(request)
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            return [("body", body)]

        async def replay() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        form = await Request(request.scope, replay).form(max_files=MAX_BATCH, max_fields=MAX_BATCH)
        files = [(value.filename or key, await value.read()) for key, value in form.multi_items()
                 if isinstance(value, UploadFile)]  # fmt: skip
        if not files:
            raise RequestError(400, "multipart request without a file field")
        return files

    def reading(image: Any) -> dict[str, Any]:
        prediction = reader.predict([image], errors="raise")[0]
        return {"text": prediction.text, "confidence": round(prediction.confidence, 6)}

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "model": model, "backend": reader.backend}

    @app.post("/read")
    async def read_one(request: Request) -> dict[str, Any]:
        files = await uploads(request)
        if len(files) != 1:
            raise RequestError(400, f"/read takes one image, got {len(files)}; use /read/batch")
        name, data = files[0]
        image = decode(data, name, max_pixels)
        try:
            return {**await run_in_threadpool(reading, image), "model": model}
        except CaptchaStreamError as exc:
            raise RequestError(422, str(exc)) from None

    @app.post("/read/batch")
    async def read_batch(request: Request) -> dict[str, Any]:
        results: list[dict[str, Any]] = []
        images: list[tuple[int, Any]] = []
        for name, data in await uploads(request):
            try:
                images.append((len(results), decode(data, name, max_pixels)))
                results.append({})
            except RequestError as exc:
                results.append({"name": name, "error": str(exc)})
        if images:
            predictions = await run_in_threadpool(reader.predict, [image for _, image in images])
            for (k, _), prediction in zip(images, predictions):
                results[k] = {"text": prediction.text, "confidence": round(prediction.confidence, 6)}
        return {"results": results, "model": model}

    return app

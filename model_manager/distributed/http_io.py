"""HTTP requests to a model deployment: decoding images and forms, and the status of every refusal.

What ``serve.ModelDeployment`` accepts and answers (its module docstring draws the contract);
here only bytes, headers and statuses, no Ray: the functions are tested without a running Serve.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import AsyncGenerator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ModelInputError, ModelManagerError, RunnerClosedError

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from ..descriptor import ModelDescriptor


class RequestError(Exception):
    """A request the deployment refuses: the HTTP status and a message saying what was expected."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def status_for(exc: BaseException) -> int:
    """The HTTP status of an exception raised while serving a request."""
    if isinstance(exc, RequestError):
        return exc.status
    if isinstance(exc, ModelInputError):
        return 422
    if isinstance(exc, RunnerClosedError):
        return 503
    return 500


def error_response(exc: BaseException) -> Response:
    """The JSON error answer; 5xx messages of unexpected exceptions say only the type."""
    status = status_for(exc)
    known = isinstance(exc, (RequestError, ModelManagerError))
    message = str(exc) if known else f"internal error ({type(exc).__name__}); see the replica's log"
    kind = "RequestError" if isinstance(exc, RequestError) else type(exc).__name__
    return json_response({"error": message, "type": kind, "status": status}, status)


def json_response(payload: Mapping[str, Any], status: int = 200) -> Response:
    """A JSON answer (values JSON cannot hold are written as strings)."""
    from starlette.responses import Response

    body = json.dumps(payload, default=str).encode()
    return Response(body, status_code=status, media_type="application/json")


# -- request bodies --------------------------------------------------------------------------------
async def read_body(request: Request, limit: int) -> bytes:
    """The request body, at most ``limit`` bytes (413 beyond, before reading it all when announced)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"expected a body of at most {limit} bytes, got {declared}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"expected a body of at most {limit} bytes, got more")
        chunks.append(chunk)
    return b"".join(chunks)


def decode_image(data: bytes, what: str, max_pixels: int) -> np.ndarray:
    """PNG / JPEG / ... bytes -> HxWx3 uint8 RGB, as ``read_image``; 415 not an image, 413 too big."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise RequestError(400, f"expected an image (PNG, JPEG, ...) as {what}, got an empty body")
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
            if width * height > max_pixels:
                raise RequestError(
                    413, f"expected {what} of at most {max_pixels} pixels, got {width}x{height}"
                )
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except UnidentifiedImageError:
        raise RequestError(
            415, f"expected an image (PNG, JPEG, ...) as {what}, got {len(data)} bytes starting {data[:16]!r}"
        ) from None
    except Image.DecompressionBombError as exc:
        raise RequestError(413, f"expected {what} of at most {max_pixels} pixels: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:  # a truncated or corrupt file Pillow recognised
        raise RequestError(415, f"expected a complete image as {what}, could not decode it: {exc}") from None


async def read_form(headers: Mapping[str, str], body: bytes) -> dict[str, bytes]:
    """The parts of a ``multipart/form-data`` body (already read, within its limit) by name, parsed by
    starlette's parser (python-multipart)."""
    from starlette.datastructures import Headers, UploadFile
    from starlette.formparsers import MultiPartException, MultiPartParser

    async def chunks() -> AsyncGenerator[bytes, None]:
        yield body

    parser = MultiPartParser(Headers(headers=dict(headers)), chunks(), max_part_size=len(body) + 1)
    try:
        form = await parser.parse()
        return {
            name: await value.read() if isinstance(value, UploadFile) else str(value).encode()
            for name, value in form.multi_items()
        }
    except (MultiPartException, KeyError, ValueError) as exc:
        raise RequestError(400, f"expected a well-formed multipart/form-data body: {exc}") from exc


def parse_scalar(raw: bytes | None, name: str, value_range: tuple[float, float]) -> float:
    """A form field as a number in ``value_range`` (default: its middle): 400 when no number, 422 outside."""
    lo, hi = value_range
    if raw is None:
        return (lo + hi) / 2
    text = raw.decode("utf-8", "replace").strip()
    try:
        value = float(text)
    except ValueError:
        raise RequestError(400, f"expected {name} as a number in {lo:g}..{hi:g}, got {text[:40]!r}") from None
    if not (math.isfinite(value) and lo <= value <= hi):
        raise RequestError(422, f"expected {name} in {lo:g}..{hi:g}, got {text[:40]}")
    return value


# -- the deployment ---------------------------------------------------------------------------------
def is_form(content_type: str) -> bool:
    return content_type.split(";")[0].strip().lower() == "multipart/form-data"


def form_fields(descriptor: ModelDescriptor) -> list[str]:
    """The form names of a model's inputs: ``image`` for one image, ``frame0``, ``frame1`` ... for
    several; a scalar input keeps its own name (``timestep``)."""
    images = descriptor.image_inputs
    names: list[str] = []
    for spec in descriptor.inputs:
        if spec.kind != "image":
            names.append(spec.name)
        elif len(images) == 1:
            names.append("image")
        else:
            names.append(f"frame{images.index(spec)}")
    return names


def sub_path(request: Request) -> str:
    """The request path below the route prefix, ``/`` for the prefix itself."""
    path = request.url.path
    root = str(request.scope.get("root_path", "") or "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return "/" + path.strip("/")


# -- Serve applications ----------------------------------------------------------------------------

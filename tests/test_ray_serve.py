"""Ray Serve: real HTTP on 127.0.0.1 against the local runner's output, and malformed requests get 4xx.

One module-scoped Ray (2 CPUs) and Serve on a free loopback port serve two applications:
super resolution ``default`` under ``onnx`` (built by the replica at start) and interpolation
``default`` under ``none`` (eager, no build).
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from model_manager import ModelConfig
from model_manager.distributed.serve import run_serve
from model_manager.distributed.serve_options import ServeOptions
from model_manager.errors import ModelInputError
from model_manager.images import from_batch, to_batch
from model_manager.manager import ModelManager
from model_manager.runners.base import RunnerInfo
from model_manager.samples import load_sample

pytestmark = [pytest.mark.slow, pytest.mark.ray]
pytest.importorskip("ray")
pytest.importorskip("ray.serve")

SR_MAX_PIXELS = 128 * 128


@dataclass(frozen=True)
class Served:
    """Where the two applications answer, and the cache their replicas built into."""

    base: str
    cache_dir: Path
    sr: ServeOptions
    vi: ServeOptions

    def url(self, options: ServeOptions, sub: str = "") -> str:
        return f"{self.base}{options.route}{sub}"


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    import ray
    from ray import serve

    cache_dir = tmp_path_factory.mktemp("serve-cache")
    common = {"cache_dir": cache_dir, "device": "cpu", "num_threads": 1, "num_cpus": 0.5}
    sr = ServeOptions(
        "super_resolution", optimization="onnx", route_prefix="/sr", max_pixels=SR_MAX_PIXELS, **common
    )
    vi = ServeOptions("interpolation", optimization="none", route_prefix="/vi", **common)
    port = _free_port()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        run_serve(vi)
        run_serve(sr)
        yield Served(f"http://127.0.0.1:{port}", cache_dir, sr, vi)
    finally:
        serve.shutdown()
        ray.shutdown()


# -- helpers -----------------------------------------------------------------------------------------
def _request(url: str, body: bytes | None = None, content_type: str | None = None) -> Answer:
    """One HTTP request with the standard library; error statuses are answers too."""
    headers = {"Content-Type": content_type} if content_type else {}
    req = urllib.request.Request(
        url, data=body, headers=headers, method="POST" if body is not None else "GET"
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return Answer(resp.status, dict(resp.headers), resp.read())
    except urllib.error.HTTPError as err:
        return Answer(err.code, dict(err.headers), err.read())


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _decode(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def _crop(name: str, size: int, shift: tuple[int, int] = (0, 0)) -> np.ndarray:
    """A size x size crop of a shipped photo, moved by ``shift`` (dy, dx) for a second frame."""
    photo = load_sample(name)
    top, left = photo.shape[0] // 3 + shift[0], photo.shape[1] // 3 + shift[1]
    return np.ascontiguousarray(photo[top : top + size, left : left + size])


def _form(fields: dict[str, bytes | str]) -> tuple[bytes, str]:
    """A multipart/form-data body from urllib3's encoder (independent of the server's parser)."""
    from urllib3.filepost import encode_multipart_formdata

    parts = {k: (f"{k}.png", v, "image/png") if isinstance(v, bytes) else v for k, v in fields.items()}
    return encode_multipart_formdata(parts)


def _local_output(
    served: Served, options: ServeOptions, images: list[np.ndarray], *scalars: float
) -> tuple[np.ndarray, RunnerInfo]:
    """The same model and strategy run in this process on the replica's cache: the expected image."""

    async def run() -> tuple[np.ndarray, RunnerInfo]:
        config = ModelConfig(cache_dir=served.cache_dir, device="cpu", num_threads=1)
        async with ModelManager(config) as manager:
            runner = await manager.load_optimized_model(
                options.model_type, options.name, options.optimization
            )
            if options.optimization != "none":
                assert runner.info.cache_hit is True  # the replica's build, loaded from the cache
            value_range = runner.input_spec[0].value_range
            inputs = [to_batch(im, value_range) for im in images]
            inputs += [np.full((1, 1, 1, 1), s, dtype=np.float32) for s in scalars]
            output = await runner.infer(*inputs)
            return from_batch(output, runner.descriptor.output.value_range)[0], runner.info

    return asyncio.run(run())


def _assert_close(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    assert int(np.abs(got.astype(np.int16) - want.astype(np.int16)).max()) <= 1


# -- good requests ------------------------------------------------------------------------------------
def test_super_resolution_over_http_matches_local_runner(served: Served) -> None:
    image = _crop("chelsea", 64)
    answer = _request(served.url(served.sr), _png(image), "image/png")
    assert answer.status == 200, answer.body
    assert answer.headers["content-type"] == "image/png"
    assert answer.headers["x-model-strategy"] == "onnx"
    assert answer.headers["x-cache-hit"] == "false"  # the replica built it at start
    got = _decode(answer.body)
    assert got.shape == (128, 128, 3)
    want, info = _local_output(served, served.sr, [image])
    _assert_close(got, want)
    assert answer.headers["x-model-type"] == "super_resolution"
    assert answer.headers["x-model-name"] == info.name  # "default" resolved to the registered name


def test_info_reports_strategy_and_cache_hit(served: Served) -> None:
    answer = _request(served.url(served.sr, "/info"))
    assert answer.status == 200
    info = answer.json()
    assert info["runner"]["strategy"] == "onnx"
    assert info["runner"]["cache_hit"] is False
    assert info["descriptor"]["size_min"] == 8
    assert info["fields"] == ["image"]
    assert info["max_pixels"] == SR_MAX_PIXELS
    assert _request(served.url(served.vi, "/info")).json()["fields"] == ["frame0", "frame1", "timestep"]


def test_interpolation_over_http_matches_local_runner(served: Served) -> None:
    frame0, frame1 = _crop("coffee", 64), _crop("coffee", 64, (4, 6))
    body, content_type = _form({"frame0": _png(frame0), "frame1": _png(frame1), "timestep": "0.25"})
    answer = _request(served.url(served.vi), body, content_type)
    assert answer.status == 200, answer.body
    assert answer.headers["x-model-strategy"] == "none"
    assert answer.headers["x-cache-hit"] == "n/a"
    want, _ = _local_output(served, served.vi, [frame0, frame1], 0.25)
    _assert_close(_decode(answer.body), want)


# -- bad requests ------------------------------------------------------------------------------------
def _frames(size0: int = 64, size1: int = 64, **extra: bytes | str) -> dict[str, bytes | str]:
    return {"frame0": _png(_crop("rocket", size0)), "frame1": _png(_crop("rocket", size1)), **extra}


def _without(fields: dict[str, bytes | str], name: str) -> dict[str, bytes | str]:
    return {k: v for k, v in fields.items() if k != name}


SR_BAD = [
    pytest.param(b"hello", "image/png", 415, "expected an image", id="not-an-image"),
    pytest.param(b"", "image/png", 400, "empty body", id="empty"),
    pytest.param("truncated", "image/png", 415, "expected a complete image", id="truncated-png"),
    pytest.param("tiny", "image/png", 422, "height and width >= 8", id="below-size-min"),
    pytest.param("huge", "image/png", 413, f"at most {SR_MAX_PIXELS} pixels", id="over-max-pixels"),
]


@pytest.mark.parametrize(("body", "content_type", "status", "message"), SR_BAD)
def test_bad_super_resolution_requests_get_4xx(
    served: Served, body: bytes | str, content_type: str, status: int, message: str
) -> None:
    made = {
        "truncated": _png(_crop("astronaut", 64))[:200],
        "tiny": _png(_crop("astronaut", 4)),
        "huge": _png(_crop("astronaut", 200)),
    }
    answer = _request(
        served.url(served.sr), made.get(body, body) if isinstance(body, str) else body, content_type
    )
    assert answer.status == status, answer.body
    error = answer.json()
    assert error["status"] == status
    assert message in error["error"]


VI_BAD = [
    pytest.param(lambda: _without(_frames(), "frame1"), 400, "'frame1'", id="missing-second-frame"),
    pytest.param(lambda: _frames(16, 16), 422, ">= 64, got 16x16", id="frames-below-size-min"),
    pytest.param(lambda: _frames(64, 128), 422, "same height and width", id="frames-of-two-sizes"),
    pytest.param(lambda: _frames(timestep="1.5"), 422, "timestep in 0..1", id="timestep-over-1"),
    pytest.param(lambda: _frames(timestep="soon"), 400, "timestep as a number", id="timestep-not-a-number"),
    pytest.param(lambda: {**_frames(), "frame0": b"hello"}, 415, "'frame0'", id="frame-not-an-image"),
]


@pytest.mark.parametrize(("fields", "status", "message"), VI_BAD)
def test_bad_interpolation_requests_get_4xx(served: Served, fields, status: int, message: str) -> None:
    body, content_type = _form(fields())
    answer = _request(served.url(served.vi), body, content_type)
    assert answer.status == status, answer.body
    assert message in answer.json()["error"]


def test_interpolation_needs_a_form(served: Served) -> None:
    answer = _request(served.url(served.vi), _png(_crop("rocket", 64)), "image/png")
    assert answer.status == 415
    assert "multipart/form-data with frame0, frame1, timestep" in answer.json()["error"]
    broken = _request(served.url(served.vi), b"--x\r\nno end", "multipart/form-data; boundary=x")
    assert broken.status == 400


def test_unknown_paths_and_methods(served: Served) -> None:
    assert _request(served.url(served.sr)).status == 405  # GET on the model route
    assert _request(served.url(served.sr, "/nope")).status == 404
    assert _request(served.url(served.sr, "/info"), b"x", "text/plain").status == 405


def test_replicas_keep_serving_after_bad_requests(served: Served) -> None:
    from ray import serve

    for _ in range(3):
        assert _request(served.url(served.sr), b"\x89PNG\r\n\x1a\nbroken", "image/png").status == 415
    image = _crop("astronaut", 48)
    answer = _request(served.url(served.sr), _png(image), "image/jpeg")  # the body decides, not the header
    assert answer.status == 200
    assert _decode(answer.body).shape == (96, 96, 3)
    for options in (served.sr, served.vi):
        app = serve.status().applications[options.app_name]
        assert app.status == "RUNNING"
        for deployment in app.deployments.values():
            assert deployment.replica_states == {"RUNNING": 1}


def test_replicas_and_autoscaling_come_from_the_options() -> None:
    from model_manager.distributed.serve import build_deployment

    fixed = build_deployment(ServeOptions("super_resolution", num_replicas=3, max_ongoing_requests=1))
    assert fixed.num_replicas == 3
    assert fixed.max_ongoing_requests == 1
    assert fixed.ray_actor_options == {"num_cpus": 1.0, "num_gpus": 0.0}
    scaled = build_deployment(
        ServeOptions("interpolation", autoscaling={"min_replicas": 1, "max_replicas": 4}, num_cpus=2)
    )
    autoscaling = scaled._deployment_config.autoscaling_config  # Serve has no public accessor
    assert (autoscaling.min_replicas, autoscaling.max_replicas) == (1, 4)
    assert scaled.ray_actor_options["num_cpus"] == 2
    with pytest.raises(ModelInputError, match="either num_replicas or autoscaling"):
        ServeOptions("super_resolution", num_replicas=2, autoscaling={"max_replicas": 2})

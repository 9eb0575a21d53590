"""Online serving on Ray Serve: one deployment per model, warmed at replica start, behind Serve's HTTP proxy.

HTTP contract (``ROUTE`` is :attr:`ServeOptions.route`, ``/<model_type>/<name>`` unless set):

- ``POST ROUTE`` runs the model and answers ``200`` with the output as ``image/png`` and the
  headers ``X-Model-Type``, ``X-Model-Name``, ``X-Model-Strategy``, ``X-Model-Backend``,
  ``X-Cache-Hit`` (``true`` / ``false`` / ``n/a``) and ``X-Inference-Ms``.

  - one-image models (super resolution, style transfer): the body is the image file (PNG, JPEG or
    anything Pillow decodes), or ``multipart/form-data`` with the file in the part ``image``;
  - two-frame models (interpolation): ``multipart/form-data`` with the files ``frame0`` and
    ``frame1`` and the field ``timestep`` (a number in 0..1, default 0.5). The form is parsed
    by starlette (python-multipart, in the ``ray`` extra).

- ``GET ROUTE/info`` answers JSON: the runner's ``info`` (strategy, cache hit, speedup, notes),
  the descriptor (value ranges, ``size_min``, ``size_multiple``) and the request limits.

Errors are JSON ``{"error": MESSAGE, "type": NAME, "status": CODE}``; a request never takes a
replica down (every exception is caught per request and logged):

====== ===================================================================================
400    empty body, a malformed form, a missing part (``frame1``), a timestep that is no number
404    an unknown path under the route
405    a method other than ``POST ROUTE`` / ``GET ROUTE/info``
413    a body over ``max_body_bytes``, an image over ``max_pixels``
415    a body that is not an image; a two-frame model's body that is not ``multipart/form-data``
422    an image the model cannot take (below ``size_min``, frames of different sizes), a
       timestep outside 0..1 (the runner's :class:`ModelInputError`)
500    any other failure (:class:`BackendError` ...); 503 when the runner is closed
====== ===================================================================================

``ray`` and ``starlette`` (which comes with ``ray[serve]``) are imported inside the functions
that use them, so importing this module needs neither.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import logging
import signal
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ..images import from_batch, to_batch
from ..manager import ModelManager
from .http_io import (
    RequestError,
    decode_image,
    error_response,
    form_fields,
    is_form,
    json_response,
    parse_scalar,
    read_body,
    read_form,
    status_for,
    sub_path,
)
from .serve_options import ServeOptions

if TYPE_CHECKING:
    from ray.serve import Application, Deployment
    from ray.serve.handle import DeploymentHandle
    from starlette.requests import Request
    from starlette.responses import Response

    from ..descriptor import ModelDescriptor

log = logging.getLogger(__name__)
replica_log = logging.getLogger(f"ray.serve.{__name__}")
"""The replicas' logger: Serve writes the ``ray.serve`` logger's records to each replica's log file."""


class ModelDeployment:
    """One Serve replica: a ModelManager and one warmed runner, answering the routes of the module doc.

    A plain class: :func:`build_app` turns it into a Serve deployment. The constructor is async
    (Serve awaits it on the replica's event loop), so the artifact is built or loaded from the
    cache and run once on a sample photo before the replica takes its first request.
    """

    async def __init__(self, options: ServeOptions) -> None:  # type: ignore[misc]
        self.options = options
        self.manager = ModelManager(options.model_config())
        limit = options.max_concurrent_inferences
        self._inference_slots = asyncio.Semaphore(limit) if limit else None
        spec = (options.model_type, options.name, options.optimization)
        started = time.perf_counter()
        try:
            [self.runner] = await self.manager.warmup([spec])
        except BaseException:  # Serve retries the replica; this one's manager must not linger
            await self.manager.aclose()
            raise
        info = self.runner.info
        replica_log.info(
            "replica ready: %s/%s [%s, cache hit %s] in %.1f s",
            info.model_type,
            info.name,
            info.strategy,
            info.cache_hit,
            time.perf_counter() - started,
        )

    async def __call__(self, request: Request) -> Response:
        """Route a request; every failure becomes a JSON error answer (the replica keeps serving)."""
        try:
            return await self._route(request)
        except Exception as exc:
            status = status_for(exc)
            if status >= 500:
                replica_log.exception("%s %s failed", request.method, request.url.path)
            else:
                replica_log.info("%s %s refused (%d): %s", request.method, request.url.path, status, exc)
            return error_response(exc)

    def check_health(self) -> None:
        """Serve's health probe: a closed runner or manager makes Serve replace the replica."""
        if self.manager.closed or self.runner.closed:
            raise RuntimeError("the replica's runner is closed")

    async def __del__(self) -> None:
        """Close the manager (and its runner) when Serve stops the replica."""
        manager = getattr(self, "manager", None)
        if manager is not None and not manager.closed:
            await manager.aclose()

    # -- routes ----------------------------------------------------------------------------------
    async def _route(self, request: Request) -> Response:
        """``POST /`` runs the model, ``GET /info`` describes it; anything else is 404 / 405."""
        path = sub_path(request)
        if path == "/info":
            if request.method not in ("GET", "HEAD"):
                raise RequestError(405, f"expected GET on {self.options.route}/info, got {request.method}")
            return json_response(self.describe())
        if path != "/":
            raise RequestError(404, f"expected POST {self.options.route} or GET {self.options.route}/info")
        if request.method != "POST":
            raise RequestError(405, f"expected POST on {self.options.route}, got {request.method}")
        return await self._infer(request)

    def describe(self) -> dict[str, Any]:
        """The ``/info`` answer: runner info, descriptor, the form fields and the limits."""
        return {
            "route": self.options.route,
            "runner": self.runner.info.to_dict(),
            "descriptor": self.runner.descriptor.to_dict(),
            "fields": form_fields(self.runner.descriptor),
            "max_pixels": self.options.max_pixels,
            "max_body_bytes": self.options.max_body_bytes,
        }

    async def _infer(self, request: Request) -> Response:
        """Decode the request, run the runner, answer the PNG with the runner's headers."""
        from starlette.responses import Response

        body = await read_body(request, self.options.max_body_bytes)
        content_type = request.headers.get("content-type", "")
        parts = await read_form(request.headers, body) if is_form(content_type) else None
        inputs = await asyncio.to_thread(self._inputs, body, content_type, parts)
        async with self._inference_slots or contextlib.nullcontext():
            started = time.perf_counter()
            output = await self.runner.infer(*inputs)
            infer_ms = (time.perf_counter() - started) * 1000
        png = await asyncio.to_thread(self._encode, output)
        return Response(png, media_type="image/png", headers=self._headers(infer_ms))

    def _inputs(self, body: bytes, content_type: str, parts: Mapping[str, bytes] | None) -> list[np.ndarray]:
        """The model inputs of a request, in the descriptor's order and value ranges."""
        descriptor = self.runner.descriptor
        images = descriptor.image_inputs
        if len(images) == 1 and parts is None:
            image = decode_image(body, "the request body", self.options.max_pixels)
            return [to_batch(image, images[0].value_range)]
        if parts is None:
            raise RequestError(
                415,
                f"expected multipart/form-data with {', '.join(form_fields(descriptor))}, "
                f"got Content-Type {content_type or 'none'!r}",
            )
        return self._form_inputs(parts, descriptor)

    def _form_inputs(self, parts: Mapping[str, bytes], descriptor: ModelDescriptor) -> list[np.ndarray]:
        """Images from the file parts (``image`` or ``frame0``, ``frame1`` ...), scalars from fields."""
        names = iter(form_fields(descriptor))
        inputs: list[np.ndarray] = []
        for spec in descriptor.inputs:
            name = next(names)
            if spec.kind == "image":
                if name not in parts:
                    raise RequestError(
                        400, f"expected the file {name!r} in the form, got parts {sorted(parts) or 'none'}"
                    )
                image = decode_image(parts[name], f"the file {name!r}", self.options.max_pixels)
                inputs.append(to_batch(image, spec.value_range))
            else:
                value = parse_scalar(parts.get(name), name, spec.value_range)
                inputs.append(np.full((1,) + (1,) * (len(spec.shape) - 1), value, dtype=np.float32))
        return inputs

    def _encode(self, output: np.ndarray) -> bytes:
        """The runner's output batch as PNG bytes."""
        from PIL import Image

        image = from_batch(output, self.runner.descriptor.output.value_range)[0]
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG", compress_level=self.options.png_compress_level)
        return buffer.getvalue()

    def _headers(self, infer_ms: float) -> dict[str, str]:
        """What served the request: model, strategy, backend, cache hit, inference time."""
        info = self.runner.info
        hit = "n/a" if info.cache_hit is None else str(info.cache_hit).lower()
        return {
            "X-Model-Type": info.model_type,
            "X-Model-Name": info.name,
            "X-Model-Strategy": info.strategy,
            "X-Model-Backend": info.backend,
            "X-Cache-Hit": hit,
            "X-Inference-Ms": f"{infer_ms:.2f}",
        }


def build_deployment(options: ServeOptions) -> Deployment:
    """:class:`ModelDeployment` as a Serve deployment: replicas or autoscaling, CPUs / GPUs per replica."""
    from ray import serve

    deployment = serve.deployment(
        name=f"{options.app_name}-deployment",
        max_ongoing_requests=options.max_ongoing_requests,
        ray_actor_options={"num_cpus": options.num_cpus, "num_gpus": options.num_gpus},
    )(ModelDeployment)
    if options.autoscaling is not None:
        return deployment.options(autoscaling_config=dict(options.autoscaling))
    return deployment.options(num_replicas=options.num_replicas)


def build_app(options: ServeOptions) -> Application:
    """The Serve application of ``options`` (deploy it with ``serve.run`` or :func:`run_serve`)."""
    return build_deployment(options).bind(options)


def run_serve(
    options: ServeOptions, *, blocking: bool = False, host: str | None = None, port: int | None = None
) -> DeploymentHandle:
    """Deploy ``options`` on Serve at ``options.route`` (starting Serve on ``host:port`` when given)."""
    from ray import serve

    if host is not None or port is not None:
        http = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
        serve.start(http_options=http)
    log.info("deploying %s at %s", options.app_name, options.route)
    return serve.run(build_app(options), name=options.app_name, route_prefix=options.route, blocking=blocking)


def main(argv: list[str] | None = None) -> None:
    """``python -m model_manager.distributed.serve TYPE [NAME]``: serve one model until interrupted."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("model_type")
    parser.add_argument("name", nargs="?", default="default")
    parser.add_argument("--optimization", default="auto")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--min-replicas", type=int, help="autoscale between --min- and --max-replicas")
    parser.add_argument("--max-replicas", type=int)
    parser.add_argument("--num-threads", type=int)
    parser.add_argument("--cache-dir")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    autoscaling = None
    if args.min_replicas is not None or args.max_replicas is not None:
        autoscaling = {"min_replicas": args.min_replicas or 1, "max_replicas": args.max_replicas or 1}
    options = ServeOptions(
        args.model_type,
        args.name,
        args.optimization,
        num_replicas=None if autoscaling else args.replicas,
        autoscaling=autoscaling,
        num_threads=args.num_threads,
        cache_dir=args.cache_dir,
    )
    logging.basicConfig(level=logging.INFO)
    run_serve(options, host=args.host, port=args.port)
    _wait_for_stop_signal()
    from ray import serve

    serve.shutdown()


def _wait_for_stop_signal() -> None:
    """Block until SIGINT or SIGTERM (handlers set after Ray's own, so both stop the server cleanly)."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    log.info("serving; SIGINT or SIGTERM stops")
    while not stop.wait(1.0):
        pass


if __name__ == "__main__":  # run the package's module, so replicas unpickle its classes by name
    from model_manager.distributed.serve import main as _main

    _main()

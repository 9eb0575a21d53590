"""Beyond one machine, on Ray (the optional extra ``ray``): batch video with Ray Data, online
serving with Ray Serve, and one build per cache key across a cluster.

- ``batch.py``: ``FrameProcessor`` (a callable class for ``Dataset.map_batches``: one manager and
  one runner per actor) and ``run_on_ray`` (a folder or a video through Ray Data, in order).
- ``frames_dataset.py``: frames of a video or an image folder as a Dataset of rows, and back.
- ``shipping.py``: a cache entry packed on the driver, sent through Ray's object store, verified
  by checksum and published atomically in each node's cache (no rebuild per actor).
- ``serve.py``: a Ray Serve deployment that warms its runner at start and serves HTTP
  (``serve_options.py``: what it serves and how it scales; ``http_io.py``: request decoding and
  the status of every refusal).

Nothing here imports ``ray`` at import time of ``model_manager``; each module imports it when used.
"""

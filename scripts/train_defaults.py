#!/usr/bin/env python
"""Train the embedded default models on CPU and write their weights, numbers and model cards.

    python scripts/train_defaults.py                     # all four, about 45 minutes on 2 cores
    python scripts/train_defaults.py --only style_transfer__sketch
    python scripts/train_defaults.py --steps 20 --out /tmp/try   # a quick smoke run

Needs the ``train`` extra (scikit-image, for its sample photos). Seeded: the same torch
version and thread count reproduce the shipped files.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

import torch

from model_manager.defaults import DEFAULT_MODELS
from model_manager.defaults.cards import metrics_record, read_metrics, save_weights, write_card, write_metrics
from model_manager.defaults.evaluation import evaluate, mean_scores
from model_manager.defaults.training import SETTINGS, train
from model_manager.defaults.training_data import load_training_photos

log = logging.getLogger("train_defaults")


def parse_args(argv: list[str]) -> argparse.Namespace:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    keys = [spec.key for spec in DEFAULT_MODELS]
    parser.add_argument("--only", action="append", choices=keys, help="train only this model (repeatable)")
    parser.add_argument("--steps", type=int, help="override the step count (smoke runs; not for shipping)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2, as shipped)")
    parser.add_argument("--out", type=Path, help="write weights here instead of into the package")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--cards-only", action="store_true", help="rewrite the cards from the saved numbers")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    if args.cards_only:
        for spec in DEFAULT_MODELS:
            if not args.only or spec.key in args.only:
                write_card(spec, read_metrics(spec))
        return 0
    photos = load_training_photos()
    summary = {}
    for spec in DEFAULT_MODELS:
        if args.only and spec.key not in args.only:
            continue
        settings = SETTINGS[spec.key] if args.steps is None else replace(SETTINGS[spec.key], steps=args.steps)
        result = train(spec, photos, settings, progress=not args.no_progress)
        scores = evaluate(spec, result.module)
        mean = mean_scores(scores)
        summary[spec.key] = {**mean, "seconds": round(result.seconds, 1)}
        log.info("%s held-out: %s", spec.key, json.dumps(mean))
        if args.out is not None:
            save_weights(result.module, args.out / f"{spec.key}.safetensors")
            continue
        size = save_weights(result.module, spec.weights_path())
        record = metrics_record(spec, result.module, scores, settings, result.seconds, size)
        write_metrics(spec, record)
        write_card(spec, record)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Classify images with MediaPipe Tasks' ImageClassifier and print the results as one JSON object.

Runs in a virtual environment of its own holding ``mediapipe`` (tests/test_mediapipe.py
makes it): mediapipe depends on opencv-contrib-python, which cannot share an
environment with this project's opencv-python-headless. It imports nothing of this project, so
MediaPipe sees the exported file exactly as any app would::

    python mediapipe_classify.py MODEL.tflite [MODEL.tflite ...] -- IMAGE [IMAGE ...]

Output: ``{"mediapipe": version, "models": {MODEL: {"results": [[{"index", "label",
"score"}, ...] per image, best first]} or {"error": "why MediaPipe refused it"}}}``.
"""

from __future__ import annotations

import json
import sys

import mediapipe as mp
from mediapipe.tasks.python import vision
from mediapipe.tasks.python.core.base_options import BaseOptions


def classify(model: str, images: list[str]) -> list[list[dict]]:
    """Every category of every image, best first, as MediaPipe reports them."""
    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=model))
    with vision.ImageClassifier.create_from_options(options) as classifier:
        results = []
        for image in images:
            (head,) = classifier.classify(mp.Image.create_from_file(image)).classifications
            results.append([{"index": c.index, "label": c.category_name, "score": c.score}
                            for c in head.categories])
        return results


def main(argv: list[str]) -> int:
    if "--" not in argv:
        print(__doc__, file=sys.stderr)
        return 2
    split = argv.index("--")
    models, images = argv[:split], argv[split + 1:]
    report = {"mediapipe": mp.__version__, "models": {}}
    for model in models:
        try:
            report["models"][model] = {"results": classify(model, images)}
        except Exception as exc:  # a model MediaPipe refuses is a result to report, not a crash
            report["models"][model] = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

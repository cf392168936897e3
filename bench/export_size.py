"""Size of a SavedModel export: bytes of saved_model.pb, of the variables, and of the whole folder.

    python bench/export_size.py jet16          # an untrained 16-coupling Jet on 28x28x1
    python bench/export_size.py saved_models/glow_fashion_mnist/model.keras

Prints one JSON line per model: the graph (saved_model.pb) and variables bytes, the
folder's bytes and `du -sk`, the bytes of the model saved as `.keras` (which a shipped
folder holds too), and the export's wall time (for orientation, not a figure).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time


def folder_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def build(what: str):
    import keras

    import tfflows

    if what == "jet16":
        keras.utils.set_random_seed(0)
        model = tfflows.Jet((28, 28, 1), patch_size=4, num_steps=16, width=64, depth=1, heads=4)
        model(keras.ops.zeros((1, 28, 28, 1)))
        return model
    return keras.models.load_model(what)


def main(argv: list[str]) -> None:
    import warnings

    import tfflows

    for what in argv:
        model = build(what)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "1")
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # an untrained model's ActNorm
                tfflows.export_saved_model(model, path)
            seconds = time.perf_counter() - start
            graph = os.path.getsize(os.path.join(path, "saved_model.pb"))
            variables = folder_bytes(os.path.join(path, "variables"))
            du = subprocess.run(["du", "-sk", path], capture_output=True, text=True).stdout.split()[0]
            model.save(os.path.join(tmp, "model.keras"))
            keras_bytes = os.path.getsize(os.path.join(tmp, "model.keras"))
            print(
                json.dumps(
                    {
                        "model": what,
                        "saved_model_pb_bytes": graph,
                        "variables_bytes": variables,
                        "folder_bytes": folder_bytes(path),
                        "du_kib": int(du),
                        "keras_bytes": keras_bytes,
                        "export_seconds": round(seconds, 1),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main(sys.argv[1:])

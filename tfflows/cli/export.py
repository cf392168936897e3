"""``tfflows export``: a trained model as a SavedModel for TF Serving."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from tfflows.cli.common import load_model

if TYPE_CHECKING:
    import argparse

__all__ = ["run"]


def run(args: argparse.Namespace) -> None:
    from tfflows.export import export_saved_model

    model = load_model(args.model_path)
    path = export_saved_model(
        model,
        os.path.join(args.out_dir, str(args.version)),
        max_samples=args.max_samples,
        overwrite=args.overwrite,
    )
    print(f"tfflows: SavedModel written to {path}")

"""``tfflows sample``: a picture of samples at several temperatures."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tfflows.cli.common import load_model, recorded_source

if TYPE_CHECKING:
    import argparse

__all__ = ["run"]


def _sample_options(args, model) -> dict:
    """``--guidance`` and ``--denoise`` as ``model.sample`` options, where the model offers them."""
    options = {}
    if args.guidance is not None:
        options["guidance"] = args.guidance
    if args.denoise:
        options["denoise"] = True
    offered = getattr(model, "sample_signature_options", None)
    name = type(model).__name__
    needs = {
        "guidance": "class-conditional TarFlow models (trained with --conditional)",
        "denoise": "TarFlow models trained with --noise gaussian",
    }
    for key in options:
        if key not in (offered or {}):
            what = (
                f"a {name}"
                if offered is None
                else f"an unconditional {name}"
                if key == "guidance"
                else f"a {name} trained with noise={getattr(model, 'noise', None)!r}"
            )
            raise ValueError(f"--{key} is for {needs[key]}, got {what} from {args.model_path!r}.")
    return options


def run(args: argparse.Namespace) -> None:
    from tfflows.callbacks import save_samples_picture

    model = load_model(args.model_path)
    options = _sample_options(args, model)
    try:  # the training data's pixel levels, drawn black to white (older runs did not record them)
        pixel_range = recorded_source(args.model_path).get("pixel_range")
    except ValueError:
        pixel_range = None
    if not (
        isinstance(pixel_range, list)
        and len(pixel_range) == 2
        and all(isinstance(v, int) for v in pixel_range)
    ):
        pixel_range = None
    save_samples_picture(
        model,
        args.out,
        args.temperatures,
        per_row=args.num,
        seed=args.seed,
        num_bits=getattr(model, "num_bits", 8),
        value_range=tuple(pixel_range) if pixel_range else None,
        sample_options=options,
    )
    print(f"tfflows: samples at temperatures {args.temperatures} written to {args.out}")

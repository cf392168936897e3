"""The ``tfflows`` command line: train, evaluate, score (OOD), sample, export, compress and decompress.

One module per subcommand (``tfflows.cli.train``, ``.evaluate``, ``.score``,
``.sample``, ``.export``), each with a ``run(args)``; the arguments are
:mod:`tfflows.cli.parser`'s and the helpers they share :mod:`tfflows.cli.common`'s.
Multi-worker training is a mode of ``train`` (:mod:`tfflows.cli.workers`).
A new subcommand is a module with ``run(args)``, its flags in ``build_parser``
and one line in :data:`COMMANDS`.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

from tfflows.cli.common import DEBUG_ENV, one_line
from tfflows.cli.parser import DEFAULT_JET_COUPLINGS, DEFAULT_STEPS, build_parser
from tfflows.cli.quiet import import_tensorflow_quietly

__all__ = ["COMMANDS", "DEBUG_ENV", "build_parser", "main"]

COMMANDS = {
    "train": "tfflows.cli.train",
    "evaluate": "tfflows.cli.evaluate",
    "score": "tfflows.cli.score",
    "sample": "tfflows.cli.sample",
    "export": "tfflows.cli.export",
    "compress": "tfflows.codec.cli:compress_files",
    "decompress": "tfflows.codec.cli:decompress_file",
}
"""Subcommand → the module whose ``run(args)`` carries it out (``"module:function"`` for another name)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; returns its exit status.

    Expected failures (bad arguments or data, missing or corrupt files,
    unreachable datasets: ``ValueError``, ``OSError``) print one line
    ``tfflows <command>: <message>`` to stderr and return 2; argument errors
    exit 2 through argparse. Anything else is a bug: one line naming the
    error and exit status 1, or the whole traceback with ``TFFLOWS_DEBUG=1``.
    Importing this module, ``--help`` and argument errors import no TensorFlow;
    TensorFlow's C++ start-up messages stay off stderr unless the user set
    ``TF_CPP_MIN_LOG_LEVEL`` (:mod:`tfflows.cli.quiet`).
    """
    args = build_parser().parse_args(argv)
    if args.command == "train" and args.steps is None:
        args.steps = DEFAULT_JET_COUPLINGS if args.model == "jet" else DEFAULT_STEPS
    if not getattr(args, "workers", None):
        # Not for a multi-worker run: starting the devices here would come before the collective
        # ops are configured, which TensorFlow refuses (they must be set at program start).
        import_tensorflow_quietly()  # before any TensorFlow import: the level is read once
    module, _, function = COMMANDS[args.command].partition(":")
    handlers = {args.command: getattr(importlib.import_module(module), function or "run")}
    debug = os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        handlers[args.command](args)
    except (ValueError, OSError) as err:
        if debug:
            raise
        print(f"tfflows {args.command}: {one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tfflows {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a bug: keep the output short, offer the traceback
        if debug:
            raise
        if type(err).__name__ == "ResourceExhaustedError":  # tf.errors: the request outgrew memory
            print(
                f"tfflows {args.command}: out of memory: {one_line(err)[:300]}; ask for less "
                "(fewer samples, a smaller --batch-size or model)",
                file=sys.stderr,
            )
            return 2
        print(
            f"tfflows {args.command}: internal error: {type(err).__name__}: {one_line(err)[:500]} "
            f"(rerun with {DEBUG_ENV}=1 for the traceback)",
            file=sys.stderr,
        )
        return 1
    return 0

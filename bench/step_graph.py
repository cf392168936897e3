"""The size and build cost of a vector model's training step: graph nodes, tracing and first run.

Builds ``tf.function(model.train_step)`` for one batch of scikit-learn's wine
table (178 × 13, standardized inside the flow) and reports the nodes of the
graph and its functions, the CPU seconds of tracing and of the first call
(Grappler, kernel creation, the step itself), and the share that the
model's own forward and backward pass takes. Run it from two commits (or
with one change undone) to see what a change to the step costs or saves::

    taskset -c 0 python bench/step_graph.py --model VectorRealNVP
"""

from __future__ import annotations

import argparse
import os
import resource

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def nodes(concrete) -> int:
    graph = concrete.graph.as_graph_def()
    return len(graph.node) + sum(len(f.node_def) for f in graph.library.function)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    models = ("VectorRealNVP", "VectorNSF", "VectorMAF")
    parser.add_argument("--model", default="VectorRealNVP", choices=models)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    import keras
    import numpy as np
    import tensorflow as tf
    from sklearn.datasets import load_wine

    import tfflows
    from tfflows.models.vector import vector_defaults
    from tfflows.training import step

    x = load_wine().data.astype("float32")
    model = getattr(tfflows, args.model)(x.shape[1], standardize=True, **vector_defaults(len(x), x.shape[1]))
    model.initialize(x)
    model.compile(optimizer=keras.optimizers.Adam(1e-3, clipnorm=10.0))
    batch = tf.constant(x[: args.batch_size])

    def forward_and_gradient(b):
        with tf.GradientTape() as tape:
            loss = step.nll(model, b, step.step_seed(model))[2]
        return loss, tape.gradient(loss, model.trainable_variables)

    model_part = tf.function(forward_and_gradient, autograph=False).get_concrete_function(batch)
    start = cpu_seconds()
    concrete = tf.function(model.train_step, autograph=False).get_concrete_function(batch)
    traced = cpu_seconds() - start
    start = cpu_seconds()
    concrete(batch)
    first = cpu_seconds() - start
    print(
        f"{args.model}: {len(model.trainable_variables)} weights; training step {nodes(concrete):,} nodes "
        f"(forward and gradient {nodes(model_part):,}); tracing {traced:.2f} CPU s, first call "
        f"{first:.2f} CPU s; TF {tf.__version__}, NumPy {np.__version__}"
    )


if __name__ == "__main__":
    main()

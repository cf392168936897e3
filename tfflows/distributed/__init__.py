"""Multi-worker training: ``MultiWorkerMirroredStrategy`` with a ``strategy.run`` loop.

Keras 3's ``fit`` does not run under ``tf.distribute.MultiWorkerMirroredStrategy``
(it fails with "Invalid reduction dimension 0 for input with 0 dimensions",
tensorflow/tensorflow#72388). :func:`fit` is the loop that does: every step
runs the model's own ``train_step`` (its NLL, non-finite guard, metrics and
optimizer) on each worker's shard of the global batch inside
``strategy.run``; gradients are summed by the strategy's collective
all-reduce over gRPC. There is no parameter server.

- :func:`cluster_config` builds or checks the ``TF_CONFIG`` cluster;
- :func:`connect` checks the worker's port, waits (bounded) for every peer
  and starts the strategy;
- :func:`fit` trains, with Keras callbacks, ActNorm initialised on the same
  global batch on every worker, and checkpoints written by the chief;
- :func:`local_copy` gives a plain (not distributed) copy to save or evaluate;
- :func:`finish` ends the run on every worker in an order that lets each exit cleanly.

A step's loss is the mean NLL over the global batch (every worker's shard),
so a step of N workers equals one single-process step on the same global
batch, up to float32 round-off in the sums.
"""

from tfflows.distributed.cluster import cluster_config, connect, finish, is_chief, worker_address
from tfflows.distributed.training import CHECKPOINT_NAME, checkpoints, fit, local_copy

__all__ = [
    "CHECKPOINT_NAME",
    "checkpoints",
    "cluster_config",
    "connect",
    "finish",
    "fit",
    "is_chief",
    "local_copy",
    "worker_address",
]

"""Data for tfflows: image datasets, IDX files, toy densities and tf.data pipelines."""

from tfflows.data.idx import IDX_DTYPES, read_idx, write_idx
from tfflows.data.images import (
    DATA_DIR_ENV,
    DEBIAN_DATA_DIRS,
    IDX_FILE_NAMES,
    LOCAL_NAMES,
    NATIVE_BITS,
    idx_search_dirs,
    load_images,
    num_bits_of,
)
from tfflows.data.pipeline import bin_centres, dequantize, make_dataset, toy_dataset
from tfflows.data.toys import (
    TOY_NAMES,
    estimate_toy_entropy,
    sample_toy,
    toy_entropy,
    toy_log_prob,
)

__all__ = [
    "DATA_DIR_ENV",
    "DEBIAN_DATA_DIRS",
    "IDX_DTYPES",
    "IDX_FILE_NAMES",
    "LOCAL_NAMES",
    "NATIVE_BITS",
    "TOY_NAMES",
    "bin_centres",
    "dequantize",
    "estimate_toy_entropy",
    "idx_search_dirs",
    "load_images",
    "make_dataset",
    "num_bits_of",
    "read_idx",
    "sample_toy",
    "toy_dataset",
    "toy_entropy",
    "toy_log_prob",
    "write_idx",
]

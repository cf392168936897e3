"""Data for tfflows: image datasets, image folders, IDX files, toy densities and tf.data pipelines."""

from tfflows.data.folder import IMAGE_SUFFIXES, image_folder
from tfflows.data.idx import IDX_DTYPES, read_idx, write_idx
from tfflows.data.images import (
    DATA_DIR_ENV,
    DEBIAN_DATA_DIRS,
    IDX_FILE_NAMES,
    LOCAL_NAMES,
    NATIVE_BITS,
    class_names,
    idx_search_dirs,
    load_images,
    num_bits_of,
)
from tfflows.data.pipeline import (
    IMAGE_KEYS,
    LABEL_KEYS,
    bin_centres,
    dequantize,
    image_key,
    integer_pixel_bits,
    label_key,
    make_dataset,
    pixel_levels,
    steady,
    toy_dataset,
)
from tfflows.data.spec import DATA_KINDS, DataSpec
from tfflows.data.toys import TOY_NAMES, estimate_toy_entropy, sample_toy, toy_entropy, toy_log_prob

__all__ = [
    "DATA_KINDS",
    "DataSpec",
    "DATA_DIR_ENV",
    "DEBIAN_DATA_DIRS",
    "IDX_DTYPES",
    "IDX_FILE_NAMES",
    "IMAGE_KEYS",
    "IMAGE_SUFFIXES",
    "LABEL_KEYS",
    "LOCAL_NAMES",
    "NATIVE_BITS",
    "TOY_NAMES",
    "bin_centres",
    "class_names",
    "dequantize",
    "estimate_toy_entropy",
    "idx_search_dirs",
    "image_folder",
    "image_key",
    "integer_pixel_bits",
    "label_key",
    "load_images",
    "make_dataset",
    "num_bits_of",
    "pixel_levels",
    "steady",
    "read_idx",
    "sample_toy",
    "toy_dataset",
    "toy_entropy",
    "toy_log_prob",
    "write_idx",
]

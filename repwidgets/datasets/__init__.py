"""Embedded datasets with concept labels and planted artifacts, and adapters for user data.

- :func:`shapes`: generated shapes (the default data of the demo);
- :func:`digits`: scikit-learn's handwritten digits with an optional planted artifact;
- :func:`as_bundle`: wrap user data (Dataset, dict of splits, ImageFolder, (X, y));
- :func:`image_folder`: your own image files with a concept table (CSV or DataFrame).
"""

from .bundle import DataBundle, TensorImageDataset, as_bundle
from .digits import DigitsDataset, digits
from .folders import FolderBundle, ImageFileDataset, ImageFileError, image_folder
from .shapes import ARTIFACTS, ShapesDataset, shapes

__all__ = [
    "ARTIFACTS",
    "DataBundle",
    "DigitsDataset",
    "FolderBundle",
    "ImageFileDataset",
    "ImageFileError",
    "ShapesDataset",
    "TensorImageDataset",
    "as_bundle",
    "digits",
    "image_folder",
    "shapes",
]

"""Shared fixtures. Real data comes from $MNISTC_DATA_DIR (CI: ../shared/data, the folder holding
mnist/); under CI=true a missing data set fails the test instead of skipping it."""
import os
from pathlib import Path

import pytest

MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def missing_data(reason):
    """Fail under CI=true (a data set CI must have is absent), skip elsewhere."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: real data is required, not skipped)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def data_dir():
    """$MNISTC_DATA_DIR as an absolute Path."""
    env = os.environ.get("MNISTC_DATA_DIR")
    if not env:
        missing_data("MNISTC_DATA_DIR is not set")
    path = Path(env).resolve()
    if not path.is_dir():
        missing_data(f"MNISTC_DATA_DIR={env} is not a folder")
    return path


@pytest.fixture(scope="session")
def mnist_dir(data_dir):
    """$MNISTC_DATA_DIR/mnist, holding the four MNIST IDX files (raw or .gz)."""
    path = data_dir / "mnist"
    absent = [f for f in MNIST_FILES if not (path / f).is_file() and not (path / (f + ".gz")).is_file()]
    if absent:
        missing_data(f"{path} lacks {', '.join(absent)}")
    return path

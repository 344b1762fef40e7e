"""MNIST handwritten digits, Keras-shaped: `load_data()` -> ((x_train, y_train), (x_test, y_test)).

    import mnistc
    (x_train, y_train), (x_test, y_test) = mnistc.datasets.mnist.load_data()
    x_train.shape, y_train[:3]          # (60000, 28, 28), array([5, 0, 4], dtype=uint8)

Works offline from the four IDX files or Keras's mnist.npz; see mnistc.datasets._lookup for where
they are looked for.
"""
from mnistc.datasets import _lookup

NAME = "mnist"
TITLE = "MNIST"
# Base URLs tried in order when the files are nowhere on disk ($MNISTC_MIRRORS replaces them).
MIRRORS = ["https://ossci-datasets.s3.amazonaws.com/mnist/",
           "https://storage.googleapis.com/cvdf-datasets/mnist/"]
# Published md5 of each downloaded .gz file.
MD5 = {
    "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
}
SYSTEM_DIRS = []
# Where Keras's own mnist.load_data() keeps its download, under ~/.keras/datasets.
KERAS_CACHE = ("npz", "mnist.npz")


def load_data(path=None):
    """Load MNIST: 60,000 training and 10,000 test images of handwritten digits.

    `path` is a folder holding the four IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte,
    t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each gzip'd or raw), or, as in Keras, an .npz
    archive such as Keras's mnist.npz (a bare name like "mnist.npz" is also looked for in
    ~/.keras/datasets/). When it is None or holds nothing, the data is looked for in
    $MNISTC_DATA_DIR/mnist/, then in ~/.cache/mnistc/mnist/ (honouring XDG_CACHE_HOME), then in
    Keras's ~/.keras/datasets/mnist.npz, and finally downloaded into the mnistc cache, md5-checked.
    See mnistc.datasets._lookup for the details.

    Args:
        path: a folder or an .npz file (str or os.PathLike), or None.

    Returns:
        ((x_train, y_train), (x_test, y_test)): uint8 arrays of shapes (60000, 28, 28), (60000,),
        (10000, 28, 28), (10000,); pixels 0..255 (not rescaled), labels 0..9.

    Raises:
        FileNotFoundError: the files are nowhere and cannot be downloaded; the message lists every
            place looked at and how to provide the files.
        mnistc.FormatError (a ValueError): a file is corrupt, has the wrong type or rank, an .npz
            archive lacks x_train, y_train, x_test or y_test, or image and label counts disagree.
        OSError: a file exists but cannot be read.
    """
    return _lookup.load_data(NAME, TITLE, path, MIRRORS, MD5, SYSTEM_DIRS, keras_cache=KERAS_CACHE)


def locate(path=None):
    """The files load_data(path) reads: {file name: path} of the four IDX files, or {"npz": path}
    of an .npz archive (downloading the IDX files into the cache if they are nowhere)."""
    return _lookup.locate(NAME, TITLE, path, MIRRORS, MD5, SYSTEM_DIRS, keras_cache=KERAS_CACHE)

"""Fashion-MNIST (Zalando article images), Keras-shaped: `load_data()` -> ((x_train, y_train), (x_test, y_test)).

    import mnistc
    (x_train, y_train), (x_test, y_test) = mnistc.datasets.fashion_mnist.load_data()
    x_train.shape                       # (60000, 28, 28); labels 0..9 = T-shirt/top .. Ankle boot

Works offline from the four IDX files; on Debian `apt-get install dataset-fashion-mnist` provides them.
"""
from mnistc.datasets import _lookup

NAME = "fashion-mnist"
TITLE = "Fashion-MNIST"
# Base URLs tried in order when the files are nowhere on disk ($MNISTC_MIRRORS replaces them).
MIRRORS = ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]
# Published md5 of each downloaded .gz file.
MD5 = {
    "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
}
# Debian's dataset-fashion-mnist package installs the four .gz files here.
SYSTEM_DIRS = ["/usr/share/datasets/fashion-mnist"]
# Where Keras's own fashion_mnist.load_data() keeps its four .gz files, under ~/.keras/datasets.
KERAS_CACHE = ("idx", "fashion-mnist")
HINT = ("On Debian or Ubuntu: apt-get install dataset-fashion-mnist (installs them into "
        "/usr/share/datasets/fashion-mnist).")
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def load_data(path=None):
    """Load Fashion-MNIST: 60,000 training and 10,000 test 28x28 grayscale images of 10 clothing classes.

    `path` is a folder holding the four IDX files (same names as MNIST's, gzip'd or raw), or an .npz
    archive laid out as Keras's mnist.npz. When it is None or holds nothing, the files are looked
    for in $MNISTC_DATA_DIR/fashion-mnist/, in ~/.cache/mnistc/fashion-mnist/ (honouring
    XDG_CACHE_HOME), in Keras's ~/.keras/datasets/fashion-mnist/, in
    /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist), and finally downloaded into
    the mnistc cache, md5-checked.

    Args:
        path: a folder or an .npz file (str or os.PathLike), or None.

    Returns:
        ((x_train, y_train), (x_test, y_test)): uint8 arrays of shapes (60000, 28, 28), (60000,),
        (10000, 28, 28), (10000,); labels 0..9 (names in CLASS_NAMES).

    Raises:
        FileNotFoundError: the files are nowhere and cannot be downloaded; the message lists every
            place looked at and how to provide the files.
        mnistc.FormatError (a ValueError): a file is corrupt, has the wrong type or rank, or image
            and label counts disagree.
        OSError: a file exists but cannot be read.
    """
    return _lookup.load_data(NAME, TITLE, path, MIRRORS, MD5, SYSTEM_DIRS, HINT, KERAS_CACHE)


def locate(path=None):
    """The files load_data(path) reads: {file name: path} of the four IDX files, or {"npz": path}
    of an .npz archive (downloading the IDX files into the cache if they are nowhere)."""
    return _lookup.locate(NAME, TITLE, path, MIRRORS, MD5, SYSTEM_DIRS, HINT, KERAS_CACHE)

"""Weights (`.weights.npz`) and whole models (`.keras`: a zip of config.json, metadata.json and
model.weights.npz), written atomically and read without pickle.

Loading is all or nothing: every array is read and checked (names by layer order and class, shapes,
finiteness, sizes before reading) before any weight of the model changes.
"""
import io
import json
import os
import tempfile
import time
import tokenize
import zipfile
import zlib

import numpy as np

from mnistc import FormatError, __version__, layers as layers_mod, losses, metrics, optimizers

_MAX_CONFIG_BYTES = 16 << 20


def _atomic_write(path, data):
    """Write bytes to path via a temp file in the same folder, fsync, rename, fsync the folder."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def _weight_keys(model):
    """{key: array} for the model's weights, keys by topology: layers/<snake_class>[_k]/vars/<i>."""
    counts, out = {}, {}
    for layer in model.layers:
        if not layer.weights:
            continue
        base = layers_mod._snake(type(layer).__name__)
        k = counts.get(base, 0)
        counts[base] = k + 1
        name = base if k == 0 else f"{base}_{k}"
        for i, w in enumerate(layer.weights):
            out[f"layers/{name}/vars/{i}"] = w
    return out


def _npz_bytes(arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _check_built(model):
    if not model.built:
        raise ValueError("You are saving a model that has not yet been built. Try building the model first by "
                         "calling it on some data or by giving its first layer an input shape.")


def save_weights(model, filepath, overwrite=True):
    filepath = os.fspath(filepath)
    if not str(filepath).endswith(".weights.npz"):
        raise ValueError(f"The filename must end in `.weights.npz`. Received: filepath={filepath}")
    _check_built(model)
    if not overwrite and os.path.exists(filepath):
        raise FileExistsError(f"{filepath} exists and overwrite=False")
    _atomic_write(filepath, _npz_bytes(_weight_keys(model)))


# Everything a damaged or hostile archive can make zipfile, zlib, json or the .npy header parser
# raise; each becomes a FormatError naming the file.
_DAMAGE = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError,
           RuntimeError, SyntaxError, tokenize.TokenError, RecursionError, KeyError)


class _ShapeMismatch(ValueError):
    """A well-formed file whose shapes differ from the model's: a ValueError, as in Keras."""


def _read_entry(zf, info, name, key, shape):
    """One float array from an .npy member: header checked (dtype, shape) before any data is read."""
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            arr_shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            arr_shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise FormatError(f"{name}: entry {key} has unsupported .npy version {version}")
        if dtype.kind != "f" or dtype.hasobject or dtype.itemsize not in (4, 8):
            raise FormatError(f"{name}: entry {key} has dtype {dtype}, expected float32")
        if shape is not None and tuple(arr_shape) != tuple(shape):
            raise _ShapeMismatch(f"{name}: {key}: file shape {tuple(arr_shape)} vs model shape {tuple(shape)}")
        n = int(np.prod(arr_shape, dtype=np.int64)) if arr_shape else 1
        nbytes = n * dtype.itemsize
        if nbytes > info.file_size:
            raise FormatError(f"{name}: entry {key} declares shape {tuple(arr_shape)} but holds only "
                              f"{info.file_size} bytes")
        data = f.read(nbytes)
        if len(data) != nbytes or f.read(1):
            raise FormatError(f"{name}: entry {key} holds {len(data)} data bytes, expected exactly {nbytes}")
    arr = np.frombuffer(data, dtype).reshape(arr_shape, order="F" if fortran else "C")
    if not np.all(np.isfinite(arr)):
        raise FormatError(f"{name}: non-finite value in {key}")
    return np.ascontiguousarray(arr, np.float32)


def _read_npz(source, name, expected, optional_prefix=None, optional_limit=0):
    """Read the arrays named in `expected` ({key: shape}) from an npz, checking names, sizes, shapes
    and finiteness before anything large is allocated; entries under `optional_prefix` (at most
    `optional_limit` bytes each) are returned too, with any shape. Returns {key: float32 array}."""
    try:
        zf = zipfile.ZipFile(source)
    except _DAMAGE as e:
        raise FormatError(f"{name}: not a mnistc weights file (not a NumPy .npz archive: {e})") from None
    with zf:
        infos = zf.infolist()
        members = {i.filename[:-4]: i for i in infos if i.filename.endswith(".npy")}
        others = [i.filename for i in infos if not i.filename.endswith(".npy")]
        if others:
            raise FormatError(f"{name}: unexpected entries {others[:3]} in the weights archive")
        missing = sorted(set(expected) - set(members))
        optional = {k for k in members if optional_prefix and k.startswith(optional_prefix)}
        extra = sorted(set(members) - set(expected) - optional)
        if missing or extra:
            raise FormatError(f"{name}: the file's weights do not match the model: missing {missing[:4]}, "
                              f"unexpected {extra[:4]} (the model has {len(expected)} weight arrays, the file "
                              f"{len(members)})")
        out = {}
        wanted = dict(expected)
        wanted.update({k: None for k in optional})
        for key, shape in wanted.items():
            info = members[key]
            limit = (8 * int(np.prod(shape)) if shape is not None else optional_limit) + 4096
            if info.file_size > limit:
                raise FormatError(f"{name}: entry {key} holds {info.file_size} bytes, more than its shape "
                                  f"allows ({limit})")
            try:
                out[key] = _read_entry(zf, info, name, key, shape)
            except (FormatError, _ShapeMismatch, MemoryError):
                raise
            except _DAMAGE as e:
                raise FormatError(f"{name}: entry {key} is damaged or not a plain array ({e})") from None
        return out


def _read_file(filepath, limit=None):
    """The file's bytes (archives are parsed from memory: a hostile offset inside one can then only
    be a parse error, never an I/O error). limit: refuse files larger than this, before reading."""
    with open(filepath, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if limit is not None and size > limit:
            raise FormatError(f"{filepath}: {size} bytes, more than the model's weights can take ({limit})")
        return f.read()


def load_weights(model, filepath):
    filepath = os.fspath(filepath)
    if not str(filepath).endswith(".weights.npz"):
        raise ValueError(f"The filename must end in `.weights.npz`. Received: filepath={filepath}")
    _check_built(model)
    current = _weight_keys(model)
    n_params = sum(w.size for w in current.values())
    blob = _read_file(filepath, limit=8 * n_params + (1 << 20))
    arrays = _read_npz(io.BytesIO(blob), filepath, {k: v.shape for k, v in current.items()})
    for key, w in current.items():
        w[...] = arrays[key]


def save_model(model, filepath, overwrite=True):
    filepath = os.fspath(filepath)
    if not str(filepath).endswith(".keras"):
        raise ValueError("Invalid filepath extension for saving. Please add a `.keras` extension for the "
                         f"native mnistc format. Received: filepath={filepath}")
    _check_built(model)
    if not overwrite and os.path.exists(filepath):
        raise FileExistsError(f"{filepath} exists and overwrite=False")
    config = {"class_name": model._kind, "config": model.get_config()}
    if model.compiled:
        config["compile_config"] = {
            "optimizer": optimizers.serialize(model.optimizer),
            "loss": losses.serialize(model.loss) if model.loss is not None else None,
            "metrics": [metrics.serialize(m) for m in model._metrics],
            "weighted_metrics": [metrics.serialize(m) for m in model._weighted_metrics],
        }
    arrays = dict(_weight_keys(model))
    opt = model.optimizer
    if opt is not None and opt._segments is not None:
        arrays["optimizer/iterations"] = opt._iterations.astype(np.float64)
        arrays["optimizer/segments"] = opt._segments.astype(np.float64)
        for i, s in enumerate(opt._slots):
            arrays[f"optimizer/vars/{i}"] = s
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("metadata.json", json.dumps({"mnistc_version": __version__,
                                                 "date_saved": time.strftime("%Y-%m-%d@%H:%M:%S")}))
        zf.writestr("config.json", json.dumps(config))
        zf.writestr("model.weights.npz", _npz_bytes(arrays))
    _atomic_write(filepath, buf.getvalue())


def _layers_from_config(config):
    """(model class, name, input shape, [Layer]) from a parsed config.json, types checked."""
    if not isinstance(config, dict) or config.get("class_name") not in ("Sequential", "Functional"):
        found = config.get("class_name") if isinstance(config, dict) else type(config).__name__
        raise FormatError(f"model config: unknown model class {found!r}")
    cfg = config.get("config")
    if not isinstance(cfg, dict):
        raise FormatError("model config: `config` must be an object")
    layer_cfgs = cfg.get("layers")
    if not isinstance(layer_cfgs, list) or len(layer_cfgs) > 10000 or \
            not all(isinstance(c, dict) and isinstance(c.get("config", {}), dict) for c in layer_cfgs):
        raise FormatError("model config: `layers` must be a list of at most 10000 layer objects")
    shape = cfg.get("input_shape")
    if shape is not None and (not isinstance(shape, list) or len(shape) > 8 or
                              not all(isinstance(d, int) and 0 < d < 2**31 for d in shape)):
        raise FormatError(f"model config: bad input_shape {shape!r}")
    if shape is None and config["class_name"] == "Functional":
        raise FormatError("model config: a functional model needs `input_shape`")
    try:
        layer_objs = [layers_mod.deserialize(c) for c in layer_cfgs]
    except (TypeError, ValueError) as e:
        raise FormatError(f"model config: bad layer ({e})") from None
    return config["class_name"], cfg.get("name"), shape, layer_objs


def _count_params(input_shape, layer_objs):
    """Number of weights the layers will create for input_shape, computed without building them."""
    total, shape = 0, tuple(input_shape)
    for layer in layer_objs:
        if isinstance(layer, layers_mod.Dense):
            if len(shape) != 1:
                raise FormatError(f"model config: Dense layer '{layer.name}' follows shape {shape}")
            total += shape[0] * layer.units + (layer.units if layer.use_bias else 0)
        shape = layer.compute_output_shape(shape)
    return total


def _check_compile_config(cc):
    if cc is None:
        return None
    if not isinstance(cc, dict) or not isinstance(cc.get("metrics", []), list) or \
            not isinstance(cc.get("weighted_metrics", []), list) or \
            not isinstance(cc.get("optimizer"), (dict, str)) or \
            not isinstance(cc.get("loss"), (dict, str, type(None))):
        raise FormatError("model config: `compile_config` must be an object with optimizer, loss and "
                          "lists of metrics and weighted_metrics")
    return cc


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """Load a model saved with `model.save("m.keras")`: architecture, weights, compile settings and
    optimizer state. Never executes code from the file; sizes are checked against the architecture
    before anything large is read or allocated.

    Raises:
        FileNotFoundError / OSError: the file cannot be read.
        mnistc.FormatError: the file is not a well-formed mnistc model file.
    """
    filepath = os.fspath(filepath)
    blob = _read_file(filepath)
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as zf:
            names = set(zf.namelist())
            if not {"config.json", "model.weights.npz"} <= names:
                raise FormatError(f"{filepath}: not a mnistc model file (config.json or model.weights.npz "
                                  "missing)")
            info = zf.getinfo("config.json")
            if info.file_size > _MAX_CONFIG_BYTES:
                raise FormatError(f"{filepath}: config.json is {info.file_size} bytes, larger than allowed")
            config = json.loads(zf.read("config.json"))
            kind, name, shape, layer_objs = _layers_from_config(config)
            cc = _check_compile_config(config.get("compile_config"))
            n_params = _count_params(shape, layer_objs) if shape is not None else None
            winfo = zf.getinfo("model.weights.npz")
            if n_params is not None:
                # the archive holds the weights (and at most 3 optimizer slots) plus small headers
                if winfo.file_size < 4 * n_params or winfo.file_size > 16 * n_params + (1 << 20):
                    raise FormatError(
                        f"{filepath}: model.weights.npz holds {winfo.file_size} bytes, which does not fit an "
                        f"architecture of {n_params} parameters")
            weights_blob = zf.read("model.weights.npz")
    except FormatError:
        raise
    except _DAMAGE as e:
        raise FormatError(f"{filepath}: not a mnistc model file or damaged ({type(e).__name__}: {e})") from None
    try:
        from mnistc.models import _assemble
        model = _assemble(kind, name, shape, layer_objs, config["config"].get("input_name"))
        if compile and cc:
            model.compile(optimizer=optimizers.get(cc["optimizer"]),
                          loss=losses.get(cc["loss"]) if cc.get("loss") else None,
                          metrics=[metrics.get(m) for m in cc.get("metrics", [])],
                          weighted_metrics=[metrics.get(m) for m in cc.get("weighted_metrics", [])])
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise FormatError(f"{filepath}: bad model config ({e})") from None
    current = _weight_keys(model)
    limit = 8 * sum(w.size for w in current.values())
    arrays = _read_npz(io.BytesIO(weights_blob), filepath, {k: v.shape for k, v in current.items()},
                       optional_prefix="optimizer/", optional_limit=limit)
    for key, w in current.items():
        w[...] = arrays[key]
    if compile and cc and "optimizer/segments" in arrays:
        _restore_optimizer(model.optimizer, arrays)
    return model


def _restore_optimizer(opt, arrays):
    """Put saved optimizer state back when it fits the compiled optimizer (else it starts afresh)."""
    segments = arrays["optimizer/segments"].astype(np.int64).reshape(-1, 2)
    opt.build(segments)
    slots = [arrays.get(f"optimizer/vars/{i}") for i in range(len(opt._slots))]
    if all(s is not None and s.shape == t.shape for s, t in zip(slots, opt._slots)):
        for s, t in zip(slots, opt._slots):
            t[...] = s
        opt._iterations[0] = int(arrays["optimizer/iterations"].reshape(-1)[0])

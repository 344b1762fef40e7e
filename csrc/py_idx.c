/* Python bindings of the IDX reader/writer (csrc/idx.c): path conversion, array allocation,
 * exceptions and the GIL. The array a load returns is allocated here (PyArray_SimpleNew) and
 * filled by C, so it owns its memory; on any error it is dropped and nothing partial escapes. */
#include "pyutil.h"

#include "idx.h"

static int idx_to_npy(int type) {
    switch (type) {
    case MC_IDX_U8: return NPY_UINT8;
    case MC_IDX_I8: return NPY_INT8;
    case MC_IDX_I16: return NPY_INT16;
    case MC_IDX_I32: return NPY_INT32;
    case MC_IDX_F32: return NPY_FLOAT32;
    case MC_IDX_F64: return NPY_FLOAT64;
    default: return -1;
    }
}

static int npy_to_idx(int typenum) {
    switch (typenum) {
    case NPY_UINT8: return MC_IDX_U8;
    case NPY_INT8: return MC_IDX_I8;
    case NPY_INT16: return MC_IDX_I16;
    case NPY_INT32: return MC_IDX_I32;
    case NPY_FLOAT32: return MC_IDX_F32;
    case NPY_FLOAT64: return MC_IDX_F64;
    default: return 0;
    }
}

/* Raise for err with OSError.filename as CPython's open() sets it: str for a str or
 * os.PathLike path, bytes for a bytes path. */
static void raise_for_path(const mc_error *err, PyObject *path, PyObject *fspath) {
    PyObject *fname = PyBytes_Check(path)
                          ? Py_NewRef(path)
                          : PyUnicode_DecodeFSDefaultAndSize(PyBytes_AS_STRING(fspath),
                                                             PyBytes_GET_SIZE(fspath));
    if (!fname) return;
    mc_py_raise(err, fname);
    Py_DECREF(fname);
}

/* max_bytes < 0 is rejected; the Python wrapper validates it first with a friendlier message. */
static int check_max_bytes(Py_ssize_t max_bytes) {
    if (max_bytes < 0) {
        PyErr_Format(PyExc_ValueError, "max_bytes must be >= 0, got %zd", max_bytes);
        return -1;
    }
    return 0;
}

static PyObject *py_read_idx(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"path", "max_bytes", "expect_magic", NULL};
    PyObject *path = NULL, *fspath = NULL, *arr = NULL, *ret = NULL;
    Py_ssize_t max_bytes = (Py_ssize_t)1 << 30;
    unsigned int expect_magic = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|nI:read_idx", kwlist, &path, &max_bytes,
                                     &expect_magic))
        return NULL;
    if (check_max_bytes(max_bytes) < 0) return NULL;
    if (!PyUnicode_FSConverter(path, &fspath)) return NULL;
    const char *cpath = PyBytes_AS_STRING(fspath);

    mc_idx_reader *r = NULL;
    mc_idx_header hdr;
    mc_error err = {0};
    mc_status st;
    Py_BEGIN_ALLOW_THREADS
    st = mc_idx_open_file(&r, cpath, (size_t)max_bytes, expect_magic, &hdr, &err);
    Py_END_ALLOW_THREADS
    if (st != MC_OK) {
        raise_for_path(&err, path, fspath);
        goto done;
    }
    npy_intp dims[MC_IDX_MAX_NDIM];
    for (int i = 0; i < hdr.ndim; i++) dims[i] = (npy_intp)hdr.dims[i];
    arr = PyArray_SimpleNew(hdr.ndim, dims, idx_to_npy(hdr.type));
    if (!arr) goto done;
    void *data = PyArray_DATA((PyArrayObject *)arr);
    Py_BEGIN_ALLOW_THREADS
    st = mc_idx_read_payload(r, data, &err);
    mc_idx_close(r);
    r = NULL;
    Py_END_ALLOW_THREADS
    if (st != MC_OK) {
        raise_for_path(&err, path, fspath);
        goto done;
    }
    ret = arr;
    arr = NULL;
done:
    if (r) {
        Py_BEGIN_ALLOW_THREADS
        mc_idx_close(r);
        Py_END_ALLOW_THREADS
    }
    Py_XDECREF(arr);
    Py_XDECREF(fspath);
    return ret;
}

/* The memory door of the same parser (what fuzz targets use): parse a bytes-like object. */
static PyObject *py_read_idx_bytes(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"data", "max_bytes", "expect_magic", NULL};
    Py_buffer view;
    PyObject *arr = NULL, *ret = NULL;
    Py_ssize_t max_bytes = (Py_ssize_t)1 << 30;
    unsigned int expect_magic = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*|nI:read_idx_bytes", kwlist, &view,
                                     &max_bytes, &expect_magic))
        return NULL;
    mc_idx_reader *r = NULL;
    mc_idx_header hdr;
    mc_error err = {0};
    mc_status st;
    if (check_max_bytes(max_bytes) < 0) goto done;
    Py_BEGIN_ALLOW_THREADS
    st = mc_idx_open_mem(&r, view.buf, (size_t)view.len, "<memory>", (size_t)max_bytes,
                         expect_magic, &hdr, &err);
    Py_END_ALLOW_THREADS
    if (st != MC_OK) {
        mc_py_raise(&err, NULL);
        goto done;
    }
    npy_intp dims[MC_IDX_MAX_NDIM];
    for (int i = 0; i < hdr.ndim; i++) dims[i] = (npy_intp)hdr.dims[i];
    arr = PyArray_SimpleNew(hdr.ndim, dims, idx_to_npy(hdr.type));
    if (!arr) goto done;
    void *data = PyArray_DATA((PyArrayObject *)arr);
    Py_BEGIN_ALLOW_THREADS
    st = mc_idx_read_payload(r, data, &err);
    Py_END_ALLOW_THREADS
    if (st != MC_OK) {
        mc_py_raise(&err, NULL);
        goto done;
    }
    ret = arr;
    arr = NULL;
done:
    mc_idx_close(r);
    Py_XDECREF(arr);
    PyBuffer_Release(&view);
    return ret;
}

static PyObject *py_read_idx_header(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"path", "max_bytes", NULL};
    PyObject *path = NULL, *fspath = NULL, *shape = NULL, *descr = NULL, *ret = NULL;
    Py_ssize_t max_bytes = PY_SSIZE_T_MAX;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|n:read_idx_header", kwlist, &path,
                                     &max_bytes))
        return NULL;
    if (check_max_bytes(max_bytes) < 0) return NULL;
    if (!PyUnicode_FSConverter(path, &fspath)) return NULL;
    const char *cpath = PyBytes_AS_STRING(fspath);

    mc_idx_reader *r = NULL;
    mc_idx_header hdr;
    mc_error err = {0};
    mc_status st;
    Py_BEGIN_ALLOW_THREADS
    st = mc_idx_open_file(&r, cpath, (size_t)max_bytes, 0, &hdr, &err);
    mc_idx_close(r);
    Py_END_ALLOW_THREADS
    if (st != MC_OK) {
        raise_for_path(&err, path, fspath);
        goto done;
    }
    shape = PyTuple_New(hdr.ndim);
    if (!shape) goto done;
    for (int i = 0; i < hdr.ndim; i++) {
        PyObject *d = PyLong_FromSize_t(hdr.dims[i]);
        if (!d) goto done;
        PyTuple_SET_ITEM(shape, i, d);
    }
    descr = (PyObject *)PyArray_DescrFromType(idx_to_npy(hdr.type));
    if (!descr) goto done;
    ret = PyTuple_Pack(2, descr, shape);
done:
    Py_XDECREF(descr);
    Py_XDECREF(shape);
    Py_XDECREF(fspath);
    return ret;
}

static PyObject *py_write_idx(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"path", "array", NULL};
    PyObject *path = NULL, *obj = NULL, *fspath = NULL, *ret = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO:write_idx", kwlist, &path, &obj))
        return NULL;
    if (!PyArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "write_idx: array must be a numpy.ndarray, got %.100s",
                     Py_TYPE(obj)->tp_name);
        return NULL;
    }
    PyArrayObject *a = (PyArrayObject *)obj;
    int type = npy_to_idx(PyArray_TYPE(a));
    if (type == 0 || !PyArray_ISNOTSWAPPED(a)) {
        PyErr_SetString(PyExc_TypeError,
                        "write_idx: dtype must be native-order uint8, int8, int16, int32, "
                        "float32 or float64");
        return NULL;
    }
    if (!PyArray_ISCARRAY_RO(a)) {
        PyErr_SetString(PyExc_ValueError, "write_idx: array must be C-contiguous and aligned");
        return NULL;
    }
    int ndim = PyArray_NDIM(a);
    if (ndim < 1 || ndim > MC_IDX_MAX_NDIM) {
        PyErr_Format(PyExc_ValueError, "write_idx: IDX holds 1..%d dims, got an array with %d",
                     MC_IDX_MAX_NDIM, ndim);
        return NULL;
    }
    size_t dims[MC_IDX_MAX_NDIM];
    for (int i = 0; i < ndim; i++) dims[i] = (size_t)PyArray_DIM(a, i);
    if (!PyUnicode_FSConverter(path, &fspath)) return NULL;
    const char *cpath = PyBytes_AS_STRING(fspath);
    Py_ssize_t plen = PyBytes_GET_SIZE(fspath);
    int gzip = plen >= 3 && memcmp(cpath + plen - 3, ".gz", 3) == 0;
    const void *data = PyArray_DATA(a);

    mc_error err = {0};
    mc_status st;
    Py_BEGIN_ALLOW_THREADS
    st = mc_idx_save(cpath, type, ndim, dims, data, gzip, &err);
    Py_END_ALLOW_THREADS
    if (st != MC_OK) {
        raise_for_path(&err, path, fspath);
        goto done;
    }
    ret = Py_NewRef(Py_None);
done:
    Py_XDECREF(fspath);
    return ret;
}

PyMethodDef mc_py_idx_methods[] = {
    {"read_idx", (PyCFunction)(void (*)(void))py_read_idx, METH_VARARGS | METH_KEYWORDS,
     "read_idx(path, max_bytes=1<<30, expect_magic=0) -> ndarray\n"
     "Read an IDX file (raw or gzip); expect_magic != 0 requires that exact magic."},
    {"read_idx_bytes", (PyCFunction)(void (*)(void))py_read_idx_bytes, METH_VARARGS | METH_KEYWORDS,
     "read_idx_bytes(data, max_bytes=1<<30, expect_magic=0) -> ndarray\n"
     "Parse IDX content (raw or gzip) from a bytes-like object: the parser's memory door."},
    {"read_idx_header", (PyCFunction)(void (*)(void))py_read_idx_header,
     METH_VARARGS | METH_KEYWORDS,
     "read_idx_header(path, max_bytes=sys.maxsize) -> (dtype, shape)\n"
     "Validate and return an IDX header without reading the payload."},
    {"write_idx", (PyCFunction)(void (*)(void))py_write_idx, METH_VARARGS | METH_KEYWORDS,
     "write_idx(path, array) -> None\n"
     "Write a native-order C-contiguous array atomically as IDX (gzip if path ends in .gz)."},
    {NULL, NULL, 0, NULL},
};

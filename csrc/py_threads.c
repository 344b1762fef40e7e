/* Python bindings of the thread pool and the GEMM variants: thread count, which kernel runs, a
 * GEMM on a named variant (for tests and benchmarks) and the FMA peak probe. Arguments are
 * checked here; the C calls run with the GIL released. */
#include "pyutil.h"

#include "gemm.h"
#include "threads.h"

static PyObject *py_set_num_threads(PyObject *self, PyObject *arg) {
    (void)self;
    if (!PyLong_Check(arg) || PyBool_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "num_threads must be an int, got %s", Py_TYPE(arg)->tp_name);
        return NULL;
    }
    int overflow = 0;
    long n = PyLong_AsLongAndOverflow(arg, &overflow);
    if (n == -1 && PyErr_Occurred()) return NULL;
    if (overflow || n < 1 || n > MC_MAX_THREADS) {
        PyErr_Format(PyExc_ValueError, "num_threads must be %s, got %R",
                     (overflow < 0 || (!overflow && n < 1)) ? ">= 1" : "<= " Py_STRINGIFY(MC_MAX_THREADS),
                     arg);
        return NULL;
    }
    mc_error err = {0};
    if (mc_set_num_threads((int)n, &err) != MC_OK) return mc_py_raise(&err, NULL);
    Py_RETURN_NONE;
}

static PyObject *py_get_num_threads(PyObject *self, PyObject *noargs) {
    (void)self;
    (void)noargs;
    return PyLong_FromLong(mc_get_num_threads());
}

static PyObject *py_kernel_info(PyObject *self, PyObject *noargs) {
    (void)self;
    (void)noargs;
    PyObject *supported = NULL, *ret = NULL;
    supported = PyList_New(0);
    if (!supported) goto done;
    for (int k = 0; k < MC_KERNEL_COUNT; k++) {
        if (!mc_kernel_supported((mc_kernel)k)) continue;
        PyObject *name = PyUnicode_FromString(mc_kernel_name((mc_kernel)k));
        if (!name || PyList_Append(supported, name) < 0) {
            Py_XDECREF(name);
            goto done;
        }
        Py_DECREF(name);
    }
    const char *req = mc_kernel_requested();
    ret = Py_BuildValue("{s:s, s:O, s:z, s:i, s:i, s:s, s:O}",
                        "variant", mc_kernel_name(mc_kernel_active()),
                        "supported", supported,
                        "requested", req,
                        "threads", mc_get_num_threads(),
                        "default_threads", mc_threads_default(),
                        "threads_source", mc_threads_source(),
                        "sparse", mc_gemm_sparse() ? Py_True : Py_False);
done:
    Py_XDECREF(supported);
    return ret;
}

/* A 2-D float32 array whose columns are adjacent (unit stride in the last axis) and whose rows
 * are a non-negative whole number of floats apart: the layout mc_gemm takes, with ld = that
 * row stride in elements. Returns 0, or -1 with an exception set. */
static int get_matrix(PyObject *obj, const char *name, int writeable, size_t *rows, size_t *cols,
                      size_t *ld) {
    if (!PyArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a numpy.ndarray, got %s", name, Py_TYPE(obj)->tp_name);
        return -1;
    }
    PyArrayObject *a = (PyArrayObject *)obj;
    if (PyArray_TYPE(a) != NPY_FLOAT32) {
        PyErr_Format(PyExc_TypeError, "%s must have dtype float32, got %S", name,
                     (PyObject *)PyArray_DESCR(a));
        return -1;
    }
    if (PyArray_NDIM(a) != 2) {
        PyErr_Format(PyExc_ValueError, "%s must be 2-D, got %d-D", name, PyArray_NDIM(a));
        return -1;
    }
    if (writeable && !PyArray_ISWRITEABLE(a)) {
        PyErr_Format(PyExc_ValueError, "%s must be writeable", name);
        return -1;
    }
    if (!PyArray_ISALIGNED(a)) {
        PyErr_Format(PyExc_ValueError, "%s must be aligned to float32", name);
        return -1;
    }
    npy_intp r = PyArray_DIM(a, 0), c = PyArray_DIM(a, 1);
    npy_intp sr = PyArray_STRIDE(a, 0), sc = PyArray_STRIDE(a, 1);
    *rows = (size_t)r;
    *cols = (size_t)c;
    *ld = c > 1 ? (size_t)c : 1;
    if (r == 0 || c == 0) return 0;  /* nothing is read or written: strides do not matter */
    if (c > 1 && sc != (npy_intp)sizeof(float)) {
        PyErr_Format(PyExc_ValueError,
                     "%s must have adjacent columns (a stride of 4 bytes in axis 1), got %zd bytes",
                     name, (Py_ssize_t)sc);
        return -1;
    }
    if (r > 1) {
        if (sr < (npy_intp)(c * (npy_intp)sizeof(float)) || sr % (npy_intp)sizeof(float) != 0) {
            PyErr_Format(PyExc_ValueError,
                         "%s rows must be a whole number of floats apart and not overlap "
                         "(row stride >= %zd bytes), got %zd bytes",
                         name, (Py_ssize_t)(c * (npy_intp)sizeof(float)), (Py_ssize_t)sr);
            return -1;
        }
        *ld = (size_t)(sr / (npy_intp)sizeof(float));
    }
    return 0;
}

/* Byte range [lo, hi) the matrix can touch. */
static void extent(PyObject *obj, size_t rows, size_t cols, size_t ld, char **lo, char **hi) {
    char *p = PyArray_BYTES((PyArrayObject *)obj);
    *lo = p;
    *hi = rows && cols ? p + ((rows - 1) * ld + cols) * sizeof(float) : p;
}

static int overlaps(PyObject *x, size_t xr, size_t xc, size_t xld, PyObject *y, size_t yr,
                    size_t yc, size_t yld) {
    char *xlo, *xhi, *ylo, *yhi;
    extent(x, xr, xc, xld, &xlo, &xhi);
    extent(y, yr, yc, yld, &ylo, &yhi);
    return xlo < xhi && ylo < yhi && xlo < yhi && ylo < xhi;
}

static PyObject *py_gemm_variant(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"trans_a", "trans_b", "alpha", "A", "B", "beta", "C", "variant", NULL};
    int ta, tb;
    float alpha, beta;
    PyObject *A, *B, *C;
    const char *variant = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "ppfOOfO|z:gemm_variant", kwlist, &ta, &tb,
                                     &alpha, &A, &B, &beta, &C, &variant))
        return NULL;
    int k = variant ? -1 : (int)mc_kernel_active();  /* None: what mc_gemm runs */
    for (int i = 0; variant && i < MC_KERNEL_COUNT; i++)
        if (strcmp(variant, mc_kernel_name((mc_kernel)i)) == 0) k = i;
    if (k < 0) {
        PyErr_Format(PyExc_ValueError, "variant must be one of 'portable', 'avx2', 'avx512', got '%s'",
                     variant);
        return NULL;
    }
    if (!mc_kernel_supported((mc_kernel)k)) {
        PyErr_Format(PyExc_ValueError, "variant '%s' is not supported by this CPU", variant);
        return NULL;
    }
    size_t ar, ac, lda, br, bc, ldb, cr, cc, ldc;
    if (get_matrix(A, "A", 0, &ar, &ac, &lda) < 0 || get_matrix(B, "B", 0, &br, &bc, &ldb) < 0 ||
        get_matrix(C, "C", 1, &cr, &cc, &ldc) < 0)
        return NULL;
    size_t M = ta ? ac : ar, K = ta ? ar : ac, KB = tb ? bc : br, N = tb ? br : bc;
    if (K != KB || cr != M || cc != N) {
        PyErr_Format(PyExc_ValueError,
                     "shapes do not match: op(A) is (%zu, %zu), op(B) is (%zu, %zu), C is (%zu, %zu); "
                     "expected op(A) (M, K), op(B) (K, N), C (M, N)",
                     M, K, KB, N, cr, cc);
        return NULL;
    }
    if (overlaps(C, cr, cc, ldc, A, ar, ac, lda) || overlaps(C, cr, cc, ldc, B, br, bc, ldb)) {
        PyErr_SetString(PyExc_ValueError, "C must not share memory with A or B");
        return NULL;
    }
    const float *pa = (const float *)PyArray_DATA((PyArrayObject *)A);
    const float *pb = (const float *)PyArray_DATA((PyArrayObject *)B);
    float *pc = (float *)PyArray_DATA((PyArrayObject *)C);
    Py_BEGIN_ALLOW_THREADS
    if (variant) mc_gemm_variant((mc_kernel)k, ta, tb, M, N, K, alpha, pa, lda, pb, ldb, beta, pc, ldc);
    else mc_gemm(ta, tb, M, N, K, alpha, pa, lda, pb, ldb, beta, pc, ldc);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *py_set_sparse(PyObject *self, PyObject *arg) {
    (void)self;
    int on = PyObject_IsTrue(arg);
    if (on < 0) return NULL;
    return PyBool_FromLong(mc_gemm_set_sparse(on));
}

static PyObject *py_fma_probe(PyObject *self, PyObject *arg) {
    (void)self;
    double seconds = PyFloat_AsDouble(arg);
    if (seconds == -1.0 && PyErr_Occurred()) return NULL;
    if (!(seconds > 0.0 && seconds <= 10.0)) {
        PyErr_Format(PyExc_ValueError, "seconds must be in (0, 10], got %R", arg);
        return NULL;
    }
    double gflops;
    Py_BEGIN_ALLOW_THREADS
    gflops = mc_fma_probe(seconds, NULL);
    Py_END_ALLOW_THREADS
    return PyFloat_FromDouble(gflops);
}

PyMethodDef mc_py_threads_methods[] = {
    {"set_num_threads", py_set_num_threads, METH_O,
     "set_num_threads(n): threads the C core may use from now on (1 <= n <= 256)."},
    {"get_num_threads", py_get_num_threads, METH_NOARGS,
     "get_num_threads() -> int: threads the C core may use."},
    {NULL, NULL, 0, NULL},
};

/* Hooks for the tests and benchmarks, in mnistc._C.testing: not the engine API. */
PyMethodDef mc_py_testing_methods[] = {
    {"kernel_info", py_kernel_info, METH_NOARGS,
     "kernel_info() -> dict: GEMM variant in use, variants this CPU supports, the MNISTC_KERNEL "
     "request (or None), threads, default threads and where the count came from, and whether "
     "mostly-zero inputs skip their zeros (sparse)."},
    {"gemm_variant", (PyCFunction)(void (*)(void))py_gemm_variant, METH_VARARGS | METH_KEYWORDS,
     "gemm_variant(trans_a, trans_b, alpha, A, B, beta, C, variant=None): C = alpha*op(A)@op(B) "
     "+ beta*C in place on float32 matrices, with the named kernel variant ('portable', 'avx2', "
     "'avx512'), or with mc_gemm's own choice when variant is None."},
    {"set_sparse", py_set_sparse, METH_O,
     "set_sparse(on) -> bool: whether products may skip the exact zeros of mostly-zero inputs "
     "from now on (the same results; default on, MNISTC_SPARSE=0 turns it off); returns the "
     "previous setting."},
    {"fma_probe", py_fma_probe, METH_O,
     "fma_probe(seconds) -> float: measured peak single-core GFLOP/s (independent FMA chains, "
     "widest vector unit the CPU supports)."},
    {NULL, NULL, 0, NULL},
};

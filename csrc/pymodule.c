/* PyInit__C: creates mnistc._C, imports the NumPy C API and adds the method tables of the
 * binding files (py_idx.c, py_train.c, py_threads.c), and the submodule mnistc._C.testing that
 * holds the hooks for tests and benchmarks apart from the engine API. */
#define MC_PYMODULE_MAIN
#include "pyutil.h"

#include "layer.h"
#include "losses.h"

/* The codes and column indices of the layer table (layer.h), for mnistc/_plan.py and the tests. */
static const struct {
    const char *name;
    long value;
} layer_constants[] = {
    {"LAYER_DENSE", MC_LAYER_DENSE}, {"LAYER_ACTIVATION", MC_LAYER_ACTIVATION}, {"LAYER_DROPOUT", MC_LAYER_DROPOUT},
    {"LAYER_RESCALING", MC_LAYER_RESCALING}, {"LAYER_CONV2D", MC_LAYER_CONV2D},
    {"LAYER_MAXPOOL2D", MC_LAYER_MAXPOOL2D}, {"LAYER_AVGPOOL2D", MC_LAYER_AVGPOOL2D},
    {"LAYER_GLOBALAVGPOOL2D", MC_LAYER_GLOBALAVGPOOL2D}, {"LAYER_BATCHNORM", MC_LAYER_BATCHNORM},
    {"LAYER_RELU", MC_LAYER_RELU}, {"LAYER_NORMALIZATION", MC_LAYER_NORMALIZATION},
    {"LAYER_COUNT", MC_LAYER_COUNT},
    {"COL_KIND", MC_COL_KIND}, {"COL_ACTIVATION", MC_COL_ACTIVATION}, {"COL_TRAINABLE", MC_COL_TRAINABLE},
    {"COL_IN_H", MC_COL_IN_H}, {"COL_IN_W", MC_COL_IN_W}, {"COL_IN_C", MC_COL_IN_C},
    {"COL_OUT_H", MC_COL_OUT_H}, {"COL_OUT_W", MC_COL_OUT_W}, {"COL_OUT_C", MC_COL_OUT_C},
    {"COL_KERNEL_H", MC_COL_KERNEL_H}, {"COL_KERNEL_W", MC_COL_KERNEL_W},
    {"COL_STRIDE_H", MC_COL_STRIDE_H}, {"COL_STRIDE_W", MC_COL_STRIDE_W},
    {"COL_PAD_TOP", MC_COL_PAD_TOP}, {"COL_PAD_LEFT", MC_COL_PAD_LEFT},
    {"COL_WEIGHT0", MC_COL_WEIGHT0}, {"TABLE_COLS", MC_TABLE_COLS}, {"MAX_WEIGHTS", MC_MAX_WEIGHTS},
    {"MAX_WINDOW", (long)MC_MAX_WINDOW},
    {"FCOL_RATE", MC_FCOL_RATE}, {"FCOL_SCALE", MC_FCOL_SCALE}, {"FCOL_OFFSET", MC_FCOL_OFFSET},
    {"FCOL_EPSILON", MC_FCOL_EPSILON}, {"FCOL_MOMENTUM", MC_FCOL_MOMENTUM},
    {"FCOL_NEGATIVE_SLOPE", MC_FCOL_NEGATIVE_SLOPE}, {"FCOL_MAX_VALUE", MC_FCOL_MAX_VALUE},
    {"FCOL_THRESHOLD", MC_FCOL_THRESHOLD}, {"FCOL_INVERT", MC_FCOL_INVERT},
    {"FCOL_W0_L1", MC_FCOL_W0_L1}, {"FCOL_W0_L2", MC_FCOL_W0_L2}, {"FCOL_W1_L1", MC_FCOL_W1_L1},
    {"FCOL_W1_L2", MC_FCOL_W1_L2}, {"FTABLE_COLS", MC_FTABLE_COLS},
};

/* The codes of the metrics the batch loops compute (losses.h), for mnistc/metrics.py and the tests. */
static const struct {
    const char *name;
    long value;
} metric_constants[] = {
    {"METRIC_NONE", MC_METRIC_NONE}, {"METRIC_SPARSE_CATEGORICAL", MC_METRIC_SPARSE_CATEGORICAL},
    {"METRIC_CATEGORICAL", MC_METRIC_CATEGORICAL}, {"METRIC_BINARY", MC_METRIC_BINARY},
    {"METRIC_SPARSE_TOP_K", MC_METRIC_SPARSE_TOP_K}, {"METRIC_TOP_K", MC_METRIC_TOP_K},
    {"METRIC_MSE", MC_METRIC_MSE}, {"METRIC_MAE", MC_METRIC_MAE}, {"METRIC_COUNT", MC_METRIC_COUNT},
    {"MAX_METRICS", MC_MAX_METRICS},
};

static PyObject *py_fail_alloc_after(PyObject *self, PyObject *arg) {
    (void)self;
    long k = PyLong_AsLong(arg);
    if (k == -1 && PyErr_Occurred()) return NULL;
    mc_fail_alloc_after(k);
    Py_RETURN_NONE;
}

static PyMethodDef fault_methods[] = {
    {"fail_alloc_after", py_fail_alloc_after, METH_O,
     "fail_alloc_after(k): make the (k+1)-th following C allocation fail; k < 0 disables."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef testing_def = {
    PyModuleDef_HEAD_INIT, "mnistc._C.testing",
    "Hooks of the C core for its tests and benchmarks (kernel variants, zero skipping, the FMA probe, "
    "allocation failures); not the engine API.", -1, NULL, NULL, NULL, NULL, NULL,
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "mnistc._C", "The C core of mnistc (private).", -1, NULL,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__C(void) {
    import_array();
    PyObject *m = PyModule_Create(&moduledef);
    if (!m) return NULL;
    if (PyModule_AddFunctions(m, mc_py_idx_methods) < 0) goto fail;
    if (PyModule_AddFunctions(m, mc_py_train_methods) < 0) goto fail;
    if (PyModule_AddFunctions(m, mc_py_threads_methods) < 0) goto fail;
    mc_FormatError = PyErr_NewExceptionWithDoc(
        "mnistc.FormatError", "A file's content is not what its format requires.", PyExc_ValueError, NULL);
    if (!mc_FormatError) goto fail;
    Py_INCREF(mc_FormatError);
    if (PyModule_AddObject(m, "FormatError", mc_FormatError) < 0) {
        Py_DECREF(mc_FormatError);
        goto fail;
    }
    if (PyModule_AddStringConstant(m, "__version__", MC_VERSION) < 0) goto fail;
    PyObject *testing = PyModule_Create(&testing_def);
    if (!testing) goto fail;
    if (PyModule_AddFunctions(testing, mc_py_testing_methods) < 0 ||
        PyModule_AddFunctions(testing, fault_methods) < 0 || PyModule_AddObject(m, "testing", testing) < 0) {
        Py_DECREF(testing);
        goto fail;
    }
    for (size_t i = 0; i < sizeof layer_constants / sizeof *layer_constants; i++)
        if (PyModule_AddIntConstant(m, layer_constants[i].name, layer_constants[i].value) < 0) goto fail;
    for (size_t i = 0; i < sizeof metric_constants / sizeof *metric_constants; i++)
        if (PyModule_AddIntConstant(m, metric_constants[i].name, metric_constants[i].value) < 0) goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}

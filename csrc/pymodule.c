/* PyInit__C: creates mnistc._C, imports the NumPy C API and adds the method tables of the
 * binding files (py_idx.c, py_train.c). The private test hooks live here too. */
#define MC_PYMODULE_MAIN
#include "pyutil.h"

static PyObject *py_fail_alloc_after(PyObject *self, PyObject *arg) {
    (void)self;
    long k = PyLong_AsLong(arg);
    if (k == -1 && PyErr_Occurred()) return NULL;
    mc_fail_alloc_after(k);
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"_fail_alloc_after", py_fail_alloc_after, METH_O,
     "Test hook: make the (k+1)-th following C allocation fail; k < 0 disables."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "mnistc._C", "The C core of mnistc (private).", -1, module_methods,
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
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}

/* Helpers shared by the Python-aware files (pymodule.c and py_*.c): exception mapping and
 * the module's exception types. Nothing outside py*.c includes Python.h. */
#ifndef MC_PYUTIL_H
#define MC_PYUTIL_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define PY_ARRAY_UNIQUE_SYMBOL MC_ARRAY_API
#ifndef MC_PYMODULE_MAIN
#define NO_IMPORT_ARRAY  /* only pymodule.c owns the NumPy API table */
#endif
#include <numpy/arrayobject.h>

#include "common.h"

/* mnistc.FormatError (a ValueError subclass), created at module init. */
extern PyObject *mc_FormatError;

/* Raise the Python exception matching err (see STYLE §4); returns NULL for `return mc_py_raise(&e);`.
 * path (may be NULL) becomes OSError.filename for MC_ERR_IO. MC_STOPPED/MC_OK raise nothing. */
PyObject *mc_py_raise(const mc_error *err, PyObject *path);

/* Method tables of the binding files, added to the module by pymodule.c. */
extern PyMethodDef mc_py_idx_methods[];
extern PyMethodDef mc_py_train_methods[];
extern PyMethodDef mc_py_threads_methods[];
extern PyMethodDef mc_py_testing_methods[];

#endif

/* Maps mc_error codes to Python exceptions. */
#include "pyutil.h"

#include <string.h>

PyObject *mc_FormatError = NULL;

PyObject *mc_py_raise(const mc_error *err, PyObject *path) {
    switch (err->code) {
    case MC_OK:
    case MC_STOPPED:
        return NULL;
    case MC_ERR_NOMEM:
        if (err->msg[0]) PyErr_SetString(PyExc_MemoryError, err->msg);
        else PyErr_NoMemory();
        return NULL;
    case MC_ERR_IO: {
        PyObject *args = path ? Py_BuildValue("(isO)", err->sys_errno, strerror(err->sys_errno), path)
                              : Py_BuildValue("(is)", err->sys_errno, strerror(err->sys_errno));
        if (args) {
            PyErr_SetObject(PyExc_OSError, args);  /* OSError picks the errno subclass itself */
            Py_DECREF(args);
        }
        return NULL;
    }
    case MC_ERR_FORMAT:
        PyErr_SetString(mc_FormatError, err->msg);
        return NULL;
    case MC_ERR_SHAPE:
    case MC_ERR_ARG:
    default:
        PyErr_SetString(PyExc_ValueError, err->msg);
        return NULL;
    }
}

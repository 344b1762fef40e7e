/* Python bindings of the IDX reader/writer. */
#include "pyutil.h"

PyMethodDef mc_py_idx_methods[] = {
    {NULL, NULL, 0, NULL},
};

/* Python bindings of the training engine. */
#include "pyutil.h"

PyMethodDef mc_py_train_methods[] = {
    {NULL, NULL, 0, NULL},
};

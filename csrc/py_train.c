/* Python bindings of the training engine (engine API: train_epoch, evaluate, predict, loss_and_grad,
 * optimizer_step, gemm, scan_floats, first_bad_label). Every array is validated (dtype, layout,
 * writeability, exact lengths, table consistency) while the GIL is held; the C work then runs with
 * the GIL released and holds a reference to every array it touches. The progress hook takes the GIL
 * back to check signals and call Python. No state survives a call. */
#include "pyutil.h"

#include <limits.h>
#include <math.h>
#include <string.h>

#include "gemm.h"
#include "losses.h"
#include "model.h"
#include "optim.h"
#include "scan.h"
#include "train.h"

#define HOOK_INTERVAL 0.05 /* seconds between hook calls unless every_batch */
#define MAX_HELD 16

/* --- per-call state: references held for the call and the C views built from them --- */

typedef struct {
    PyObject *held[MAX_HELD];
    int n_held;
    mc_layer *layers;
    int64_t *segments;  /* derived from the table (mc_model_segments), for train_epoch */
    mc_model model;
    mc_data data;
    mc_optim opt;
    int64_t *iterations;
} call_state;

static void state_release(call_state *s) {
    for (int i = 0; i < s->n_held; i++) Py_DECREF(s->held[i]);
    s->n_held = 0;
    mc_free(s->layers);
    s->layers = NULL;
    mc_free(s->segments);
    s->segments = NULL;
}

static void hold(call_state *s, PyArrayObject *a) {
    Py_INCREF(a);
    s->held[s->n_held++] = (PyObject *)a;
}

static const char *type_name(int t) {
    switch (t) {
    case NPY_FLOAT32: return "float32";
    case NPY_FLOAT64: return "float64";
    case NPY_UINT8: return "uint8";
    case NPY_INT32: return "int32";
    case NPY_INT64: return "int64";
    default: return "?";
    }
}

static void shape_str(PyArrayObject *a, char *buf, size_t n) {
    int nd = PyArray_NDIM(a);
    size_t k = (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < nd && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ", %zd" : "%zd", (Py_ssize_t)PyArray_DIM(a, i));
    if (k < n) snprintf(buf + k, n - k, nd == 1 ? ",)" : ")");
}

/* "t1" or "t1 or t2" (t2 >= 0) into buf; buf. */
static const char *dtypes_str(int t1, int t2, char *buf, size_t n) {
    if (t2 >= 0) snprintf(buf, n, "%s or %s", type_name(t1), type_name(t2));
    else snprintf(buf, n, "%s", type_name(t1));
    return buf;
}

/* o as an ndarray of dtype t1 (or t2 when t2 >= 0) in native byte order, ndim nd (nd < 0: any),
 * C-contiguous, aligned, and writeable if `writeable`. Borrowed; NULL with TypeError (not an array,
 * wrong dtype) or ValueError (layout, writeability) set. */
static PyArrayObject *get_array(PyObject *o, const char *name, int t1, int t2, int nd, int writeable) {
    char want[48];  /* formatted only for a message: a call's checks run on every predict */
    if (!PyArray_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s: expected %s array, got %.100s", name,
                     dtypes_str(t1, t2, want, sizeof want), Py_TYPE(o)->tp_name);
        return NULL;
    }
    PyArrayObject *a = (PyArrayObject *)o;
    int tn = PyArray_DESCR(a)->type_num;
    int ok = PyArray_EquivTypenums(tn, t1) || (t2 >= 0 && PyArray_EquivTypenums(tn, t2));
    if (!ok || !PyArray_ISNOTSWAPPED(a)) {
        PyErr_Format(PyExc_TypeError, "%s: expected %s array, got %S%s", name,
                     dtypes_str(t1, t2, want, sizeof want), (PyObject *)PyArray_DESCR(a),
                     ok ? " (non-native byte order)" : "");
        return NULL;
    }
    if (nd >= 0 && PyArray_NDIM(a) != nd) {
        char sh[96];
        shape_str(a, sh, sizeof sh);
        PyErr_Format(PyExc_ValueError, "%s: expected a %d-D array, got shape %s", name, nd, sh);
        return NULL;
    }
    if (!PyArray_IS_C_CONTIGUOUS(a)) {
        PyErr_Format(PyExc_ValueError, "%s: expected a C-contiguous array, got a strided view", name);
        return NULL;
    }
    if (!PyArray_ISALIGNED(a)) {
        PyErr_Format(PyExc_ValueError, "%s: expected an aligned array, got a misaligned buffer", name);
        return NULL;
    }
    if (writeable && !PyArray_ISWRITEABLE(a)) {
        PyErr_Format(PyExc_ValueError, "%s: expected a writeable %s array, got a read-only one", name,
                     dtypes_str(t1, t2, want, sizeof want));
        return NULL;
    }
    return a;
}

static int check_len(PyArrayObject *a, const char *name, npy_intp want, const char *why) {
    if (PyArray_DIM(a, 0) != want) {
        PyErr_Format(PyExc_ValueError, "%s: expected length %zd (%s), got %zd", name, (Py_ssize_t)want, why,
                     (Py_ssize_t)PyArray_DIM(a, 0));
        return -1;
    }
    return 0;
}

static int overlaps(PyArrayObject *a, PyArrayObject *b) {
    const char *pa = PyArray_BYTES(a), *pb = PyArray_BYTES(b);
    size_t na = (size_t)PyArray_NBYTES(a), nb = (size_t)PyArray_NBYTES(b);
    if (!na || !nb) return 0;
    return pa < pb + nb && pb < pa + na;
}

static int check_disjoint(PyArrayObject *a, const char *na, PyArrayObject *b, const char *nb) {
    if (overlaps(a, b)) {
        PyErr_Format(PyExc_ValueError, "%s: must not share memory with %s", na, nb);
        return -1;
    }
    return 0;
}

/* Raise the Python exception for a failed C check. */
static int raise_err(const mc_error *err) {
    mc_py_raise(err, NULL);
    return -1;
}

/* --- argument groups --- */

/* x: (N, d) float32 (or uint8 when allow_u8). */
static int parse_x(call_state *s, PyObject *o, int allow_u8) {
    PyArrayObject *x = get_array(o, "x", NPY_FLOAT32, allow_u8 ? NPY_UINT8 : -1, 2, 0);
    if (!x) return -1;
    hold(s, x);
    s->data.x = PyArray_DATA(x);
    s->data.x_u8 = PyArray_DESCR(x)->type_num == NPY_UINT8;
    s->data.N = (size_t)PyArray_DIM(x, 0);
    s->data.d = (size_t)PyArray_DIM(x, 1);
    return 0;
}

/* layers (L, MC_TABLE_COLS) int64, lfloats (L, MC_FTABLE_COLS) float64, params (P) float32 writeable, grads (P) (optional). */
static int parse_model(call_state *s, PyObject *lo, PyObject *fo, PyObject *po, PyObject *go) {
    PyArrayObject *tab = get_array(lo, "layers", NPY_INT64, -1, 2, 0);
    if (!tab) return -1;
    hold(s, tab);
    if (PyArray_DIM(tab, 1) != MC_TABLE_COLS) {
        PyErr_Format(PyExc_ValueError, "layers: expected shape (L, %d), got (%zd, %zd)", MC_TABLE_COLS,
                     (Py_ssize_t)PyArray_DIM(tab, 0), (Py_ssize_t)PyArray_DIM(tab, 1));
        return -1;
    }
    size_t L = (size_t)PyArray_DIM(tab, 0);
    if (L == 0) {
        PyErr_SetString(PyExc_ValueError, "layers: the table has no rows (expected at least one layer)");
        return -1;
    }
    PyArrayObject *lf = get_array(fo, "lfloats", NPY_FLOAT64, -1, 2, 0);
    if (!lf) return -1;
    hold(s, lf);
    if ((size_t)PyArray_DIM(lf, 0) != L || PyArray_DIM(lf, 1) != MC_FTABLE_COLS) {
        PyErr_Format(PyExc_ValueError, "lfloats: expected shape (%zu, %d) (one row per layer), got (%zd, %zd)", L,
                     MC_FTABLE_COLS, (Py_ssize_t)PyArray_DIM(lf, 0), (Py_ssize_t)PyArray_DIM(lf, 1));
        return -1;
    }
    PyArrayObject *params = get_array(po, "params", NPY_FLOAT32, -1, 1, 1);
    if (!params) return -1;
    hold(s, params);
    size_t P = (size_t)PyArray_DIM(params, 0);
    s->model.params = PyArray_DATA(params);
    s->model.P = P;
    if (go) {
        PyArrayObject *grads = get_array(go, "grads", NPY_FLOAT32, -1, 1, 1);
        if (!grads) return -1;
        hold(s, grads);
        if (check_len(grads, "grads", (npy_intp)P, "len(params)") < 0) return -1;
        if (check_disjoint(grads, "grads", params, "params") < 0) return -1;
        s->model.grads = PyArray_DATA(grads);
    }
    s->layers = mc_malloc((L ? L : 1) * sizeof *s->layers);
    if (!s->layers) {
        PyErr_NoMemory();
        return -1;
    }
    mc_error err = {0};
    if (mc_layers_from_table(s->layers, PyArray_DATA(tab), PyArray_DATA(lf), L, s->data.d, P, &err) != MC_OK)
        return raise_err(&err);
    s->model.layers = s->layers;
    s->model.L = L;
    return 0;
}

static size_t n_out_last(const call_state *s) { return s->model.layers[s->model.L - 1].n_out; }

/* y: int32 (N) class ids in [0, n_out) for SCCE, else float32 (N, n_out). */
static int parse_y(call_state *s, PyObject *o, int loss_kind) {
    size_t N = s->data.N, n = n_out_last(s);
    if (loss_kind == MC_LOSS_SCCE) {
        PyArrayObject *y = get_array(o, "y", NPY_INT32, -1, 1, 0);
        if (!y) return -1;
        hold(s, y);
        if (check_len(y, "y", (npy_intp)N, "rows of x") < 0) return -1;
        const int32_t *lab = PyArray_DATA(y);
        for (size_t i = 0; i < N; i++) {
            if (lab[i] < 0 || (size_t)lab[i] >= n) {
                PyErr_Format(PyExc_ValueError, "y: label %d at index %zu is out of range [0, %zu) for a model "
                             "with %zu outputs", (int)lab[i], i, n, n);
                return -1;
            }
        }
        s->data.labels = lab;
        return 0;
    }
    PyArrayObject *y = get_array(o, "y", NPY_FLOAT32, -1, 2, 0);
    if (!y) return -1;
    hold(s, y);
    if ((size_t)PyArray_DIM(y, 0) != N || (size_t)PyArray_DIM(y, 1) != n) {
        PyErr_Format(PyExc_ValueError, "y: expected shape (%zu, %zu) (rows of x, n_out of the last layer), got "
                     "(%zd, %zd)", N, n, (Py_ssize_t)PyArray_DIM(y, 0), (Py_ssize_t)PyArray_DIM(y, 1));
        return -1;
    }
    s->data.y = PyArray_DATA(y);
    return 0;
}

/* sample_weight: None, or float32 (N) finite weights of the per-sample losses. */
static int parse_sw(call_state *s, PyObject *o) {
    if (o == Py_None) return 0;
    PyArrayObject *w = get_array(o, "sample_weight", NPY_FLOAT32, -1, 1, 0);
    if (!w) return -1;
    hold(s, w);
    if (check_len(w, "sample_weight", (npy_intp)s->data.N, "rows of x") < 0) return -1;
    mc_scan_result r = mc_scan(PyArray_DATA(w), MC_SCAN_F32, s->data.N);
    if (r.n_nan || r.n_inf) {
        PyErr_Format(PyExc_ValueError, "sample_weight: holds %zu NaN and %zu infinite value(s); expected finite "
                     "weights", r.n_nan, r.n_inf);
        return -1;
    }
    s->data.sw = PyArray_DATA(w);
    return 0;
}

/* One metric: an int code, a (code, k) pair for the top-k metrics, or a (code, k, weighted) triple. */
static int parse_metric(PyObject *o, mc_metric_spec *spec, Py_ssize_t i) {
    long v[3] = {0, 0, 0};
    Py_ssize_t n = PyTuple_Check(o) ? PyTuple_GET_SIZE(o) : 0;
    if (n == 2 || n == 3) {
        for (Py_ssize_t j = 0; j < n && !PyErr_Occurred(); j++) v[j] = PyLong_AsLong(PyTuple_GET_ITEM(o, j));
    } else {
        v[0] = PyLong_AsLong(o);
    }
    if (PyErr_Occurred() || PyBool_Check(o)) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "metric[%zd]: expected an int code or a (code, k) pair of ints (or a (code, "
                     "k, weighted) triple), got %.100R", i, o);
        return -1;
    }
    for (int j = 0; j < 3; j++)
        if (v[j] < INT_MIN || v[j] > INT_MAX) {  /* the values are checked in C */
            PyErr_Format(PyExc_ValueError, "metric[%zd]: %.100R does not fit a C int", i, o);
            return -1;
        }
    spec->code = (int)v[0];
    spec->k = (int)v[1];
    spec->weighted = (int)v[2];
    return 0;
}

/* metric: an int code (one metric; 0: none), whose sum the call returns as a float, or a tuple of
 * up to MC_MAX_METRICS metrics (int codes, (code, k) pairs or (code, k, weighted) triples), whose sums
 * it returns as a tuple. */
static int parse_metrics(PyObject *o, mc_metrics *metrics, int *as_tuple) {
    memset(metrics, 0, sizeof *metrics);
    *as_tuple = PyTuple_Check(o);
    if (!*as_tuple) {
        if (parse_metric(o, &metrics->m[0], 0) < 0) return -1;
        metrics->n = metrics->m[0].code != MC_METRIC_NONE;
        return 0;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(o);
    if (n > MC_MAX_METRICS) {
        PyErr_Format(PyExc_ValueError, "metric: at most %d metrics, got %zd", MC_MAX_METRICS, n);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        if (parse_metric(PyTuple_GET_ITEM(o, i), &metrics->m[i], i) < 0) return -1;
    metrics->n = (size_t)n;
    return 0;
}

/* The metric sums as the call's `metric` asked (NULL: none): one float, or a tuple with a float per
 * metric and, for a weighted one, the pair (sum of w v, sum of w). New reference. */
static PyObject *metric_sums_object(const mc_metrics *metrics, const double *sums, double weight_sum,
                                    int as_tuple) {
    size_t n = metrics ? metrics->n : 0;
    if (!as_tuple) return PyFloat_FromDouble(n ? sums[0] : 0.0);
    PyObject *t = PyTuple_New((Py_ssize_t)n);
    for (size_t i = 0; t && i < n; i++) {
        PyObject *v = metrics->m[i].weighted ? Py_BuildValue("(dd)", sums[i], weight_sum)
                                             : PyFloat_FromDouble(sums[i]);
        if (!v) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, (Py_ssize_t)i, v);
    }
    return t;
}

static int parse_loss(PyObject *o, const mc_metrics *metrics, mc_loss_spec *spec) {
    int kind, from_logits;
    double ls;
    if (!PyTuple_Check(o) || PyTuple_GET_SIZE(o) != 3) {
        PyErr_Format(PyExc_TypeError, "loss: expected a tuple (kind, from_logits, label_smoothing), got %.100s",
                     Py_TYPE(o)->tp_name);
        return -1;
    }
    if (!PyArg_ParseTuple(o, "iid;loss: expected (int kind, int from_logits, float label_smoothing)", &kind,
                          &from_logits, &ls))
        return -1;
    spec->kind = kind;
    spec->from_logits = from_logits;
    spec->label_smoothing = (float)ls;
    mc_error err = {0};
    if (mc_loss_check(spec, metrics, &err) != MC_OK) return raise_err(&err);
    return 0;
}

/* The optimizer's segments of the parsed model, into s->segments: the trainable flags cross once,
 * in the table. */
static int derive_segments(call_state *s, const int64_t **segments, size_t *S) {
    s->segments = mc_malloc(2 * MC_MAX_WEIGHTS * s->model.L * sizeof *s->segments);
    if (!s->segments) {
        PyErr_NoMemory();
        return -1;
    }
    *S = mc_model_segments(&s->model, s->segments);
    *segments = s->segments;
    return 0;
}

/* segments (S, 2) int64, as optimizer_step takes them. */
static int parse_segments(call_state *s, PyObject *so, const int64_t **segments, size_t *S) {
    PyArrayObject *seg = get_array(so, "segments", NPY_INT64, -1, 2, 0);
    if (!seg) return -1;
    hold(s, seg);
    if (PyArray_DIM(seg, 1) != 2) {
        PyErr_Format(PyExc_ValueError, "segments: expected shape (S, 2), got (%zd, %zd)",
                     (Py_ssize_t)PyArray_DIM(seg, 0), (Py_ssize_t)PyArray_DIM(seg, 1));
        return -1;
    }
    *segments = PyArray_DATA(seg);
    *S = (size_t)PyArray_DIM(seg, 0);
    return 0;
}

/* opt, hyper (8 + the schedule's parameters) float64, the segments (S, 2) [offset, length] it trains,
 * slots (tuple of float32 writeable arrays), iterations (1,) int64 writeable. P = len(params).
 * params/grads arrays for the overlap checks. */
static int parse_opt(call_state *s, int kind, PyObject *ho, const int64_t *segments, size_t n_segments,
                     PyObject *slo, PyObject *io, PyArrayObject *params, PyArrayObject *grads) {
    if (kind < 0 || kind >= MC_OPT_COUNT) {
        PyErr_Format(PyExc_ValueError, "opt: expected 0 (SGD), 1 (Adam), 2 (RMSprop), 3 (Adagrad), 4 (Adamax) or "
                     "5 (Nadam), got %d", kind);
        return -1;
    }
    PyArrayObject *hyper = get_array(ho, "hyper", NPY_FLOAT64, -1, 1, 0);
    if (!hyper) return -1;
    hold(s, hyper);
    if (PyArray_DIM(hyper, 0) < MC_HYPER_COUNT) {
        PyErr_Format(PyExc_ValueError, "hyper: expected length %d (the engine's hyperparameter vector) or more (then "
                     "the schedule's parameters), got %zd", (int)MC_HYPER_COUNT, (Py_ssize_t)PyArray_DIM(hyper, 0));
        return -1;
    }
    PyArrayObject *it = get_array(io, "iterations", NPY_INT64, -1, 1, 1);
    if (!it) return -1;
    hold(s, it);
    if (check_len(it, "iterations", 1, "a one-element counter") < 0) return -1;
    s->iterations = PyArray_DATA(it);
    mc_optim *opt = &s->opt;
    opt->kind = kind;
    memcpy(opt->hyper, PyArray_DATA(hyper), sizeof opt->hyper);
    opt->sched = (const double *)PyArray_DATA(hyper) + MC_HYPER_COUNT;
    opt->n_sched = (size_t)PyArray_DIM(hyper, 0) - MC_HYPER_COUNT;
    opt->segments = segments;
    opt->n_segments = n_segments;
    if (!PyTuple_Check(slo) && !PyList_Check(slo)) {
        PyErr_Format(PyExc_TypeError, "slots: expected a tuple of float32 arrays, got %.100s", Py_TYPE(slo)->tp_name);
        return -1;
    }
    Py_ssize_t n_slots = PySequence_Size(slo);
    if (n_slots < 0) return -1;
    size_t want = mc_optim_n_slots(kind, opt->hyper);
    if ((size_t)n_slots != want) {
        PyErr_Format(PyExc_ValueError, "slots: optimizer %d with these hyperparameters needs %zu slot arrays, got %zd",
                     kind, want, n_slots);
        return -1;
    }
    mc_error err = {0};
    opt->n_slots = want; /* segments are checked first: the slot length depends on them */
    if (mc_optim_check(opt, s->model.P, &err) != MC_OK) return raise_err(&err);
    size_t slot_len = mc_optim_slot_len(opt->segments, opt->n_segments);
    PyArrayObject *arrs[MC_OPT_MAX_SLOTS];
    for (Py_ssize_t i = 0; i < n_slots; i++) {
        char name[48];
        snprintf(name, sizeof name, "slots[%zd]", i);
        PyObject *item = PySequence_GetItem(slo, i);
        if (!item) return -1;
        PyArrayObject *a = get_array(item, name, NPY_FLOAT32, -1, 1, 1);
        Py_DECREF(item); /* the tuple/list keeps it alive until hold() below */
        if (!a) return -1;
        hold(s, a);
        if (mc_optim_slot_is_scalar(kind, (size_t)i)) {
            if (check_len(a, name, 1, "one value for the whole optimizer") < 0) return -1;
        } else if (check_len(a, name, (npy_intp)slot_len, "sum of the segment lengths") < 0) return -1;
        if (check_disjoint(a, name, params, "params") < 0) return -1;
        if (grads && check_disjoint(a, name, grads, "grads") < 0) return -1;
        for (Py_ssize_t j = 0; j < i; j++) {
            char other[48];
            snprintf(other, sizeof other, "slots[%zd]", j);
            if (check_disjoint(a, name, arrs[j], other) < 0) return -1;
        }
        arrs[i] = a;
        opt->slots[i] = PyArray_DATA(a);
    }
    opt->n_slots = (size_t)n_slots;
    if (mc_optim_check(opt, s->model.P, &err) != MC_OK) return raise_err(&err);
    if (check_disjoint(it, "iterations", params, "params") < 0) return -1;
    return 0;
}

static PyArrayObject *held_array(const call_state *s, int i) { return (PyArrayObject *)s->held[i]; }

/* --- progress hook --- */

typedef struct {
    PyObject *fn;  /* Py_None or a callable */
    int failed;    /* a Python exception is set (hook raised, or a signal handler did) */
    int stopped;   /* the hook returned a truthy value */
    const mc_metrics *metrics;  /* NULL: none (predict) */
    int metrics_as_tuple;  /* the metric sums go to the hook as a tuple (else one float) */
} hook_ctx;

/* Runs with the GIL released by the caller: takes it back, checks signals, calls the Python hook. */
static int py_progress(void *vctx, const mc_progress *p) {
    hook_ctx *c = vctx;
    PyGILState_STATE g = PyGILState_Ensure();
    int stop = 0;
    if (PyErr_CheckSignals() < 0) {
        c->failed = stop = 1;
    } else if (c->fn != Py_None) {
        PyObject *sums = metric_sums_object(c->metrics, p->metric_sums, p->weight_sum, c->metrics_as_tuple);
        PyObject *r = sums ? PyObject_CallFunction(c->fn, "ndOn", (Py_ssize_t)p->batch, p->loss_sum, sums,
                                                   (Py_ssize_t)p->n_seen)
                           : NULL;
        Py_XDECREF(sums);
        if (!r) {
            c->failed = stop = 1;
        } else {
            int t = PyObject_IsTrue(r);
            Py_DECREF(r);
            if (t < 0) c->failed = stop = 1;
            else if (t) c->stopped = stop = 1;
        }
    }
    PyGILState_Release(g);
    return stop;
}

static int check_hook(PyObject *fn) {
    if (fn != Py_None && !PyCallable_Check(fn)) {
        PyErr_Format(PyExc_TypeError, "hook: expected None or a callable, got %.100s", Py_TYPE(fn)->tp_name);
        return -1;
    }
    return 0;
}

static int check_batch_size(Py_ssize_t bs) {
    if (bs < 1) {
        PyErr_Format(PyExc_ValueError, "batch_size: expected a positive integer, got %zd", bs);
        return -1;
    }
    return 0;
}

/* Maps the C status after a hooked call: NULL-worthy (-1) when a Python error is pending. */
static int finish(mc_status st, const mc_error *err, const hook_ctx *hc) {
    if (hc->failed) return -1; /* exception already set by the hook or a signal handler */
    if (st != MC_OK && st != MC_STOPPED) return raise_err(err);
    return 0;
}

/* --- train_epoch --- */

static PyObject *py_train_epoch(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"layers", "lfloats", "params", "grads", "x", "y", "perm", "batch_size", "loss",
                             "metric", "opt", "hyper", "slots", "iterations", "seed", "hook", "every_batch",
                             "sample_weight", NULL};
    PyObject *lo, *fo, *po, *go, *xo, *yo, *permo, *losso, *mo, *ho, *slo, *io, *hook = Py_None, *swo = Py_None;
    Py_ssize_t batch_size;
    int kind, every_batch = 0, as_tuple;
    unsigned long long seed;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOOOOnOOiOOOK|OpO:train_epoch", kwlist, &lo, &fo, &po, &go,
                                     &xo, &yo, &permo, &batch_size, &losso, &mo, &kind, &ho, &slo, &io, &seed,
                                     &hook, &every_batch, &swo))
        return NULL;
    call_state s;
    memset(&s, 0, sizeof s);
    PyObject *ret = NULL;
    const int64_t *perm = NULL;
    unsigned char *seen = NULL;
    mc_loss_spec spec;
    mc_metrics metrics;
    if (check_batch_size(batch_size) < 0 || check_hook(hook) < 0) goto done;
    if (parse_metrics(mo, &metrics, &as_tuple) < 0 || parse_loss(losso, &metrics, &spec) < 0) goto done;
    if (parse_x(&s, xo, 1) < 0) goto done;
    int i_params = s.n_held + 2, i_grads = s.n_held + 3;
    if (parse_model(&s, lo, fo, po, go) < 0) goto done;
    if (parse_y(&s, yo, spec.kind) < 0 || parse_sw(&s, swo) < 0) goto done;
    if (permo != Py_None) {
        PyArrayObject *pa = get_array(permo, "perm", NPY_INT64, -1, 1, 0);
        if (!pa) goto done;
        hold(&s, pa);
        if (check_len(pa, "perm", (npy_intp)s.data.N, "rows of x") < 0) goto done;
        perm = PyArray_DATA(pa);
        seen = mc_calloc(s.data.N ? s.data.N : 1, 1);
        if (!seen) {
            PyErr_NoMemory();
            goto done;
        }
        for (size_t i = 0; i < s.data.N; i++) {
            int64_t v = perm[i];
            if (v < 0 || (uint64_t)v >= s.data.N) {
                PyErr_Format(PyExc_ValueError, "perm: value %lld at index %zu is out of range [0, %zu)", (long long)v,
                             i, s.data.N);
                goto done;
            }
            if (seen[v]) {
                PyErr_Format(PyExc_ValueError, "perm: value %lld repeats at index %zu (expected a permutation of "
                             "range(%zu))", (long long)v, i, s.data.N);
                goto done;
            }
            seen[v] = 1;
        }
    }
    const int64_t *segments;
    size_t n_segments;
    if (derive_segments(&s, &segments, &n_segments) < 0) goto done;
    if (parse_opt(&s, kind, ho, segments, n_segments, slo, io, held_array(&s, i_params), held_array(&s, i_grads)) < 0)
        goto done;

    hook_ctx hc = {hook, 0, 0, &metrics, as_tuple};
    mc_hook h = {py_progress, &hc, every_batch ? 0.0 : HOOK_INTERVAL};
    mc_sums sums = {0};
    mc_error err = {0};
    mc_status st;
    Py_BEGIN_ALLOW_THREADS
    st = mc_train_epoch(&s.model, &s.data, perm, (size_t)batch_size, &spec, &metrics, &s.opt, s.iterations,
                        (uint64_t)seed, &h, &sums, &err);
    Py_END_ALLOW_THREADS
    if (finish(st, &err, &hc) < 0) goto done;
    ret = Py_BuildValue("(dNnN)", sums.loss_sum,
                        metric_sums_object(&metrics, sums.metric_sums, sums.weight_sum, as_tuple),
                        (Py_ssize_t)sums.n_seen, PyBool_FromLong(hc.stopped));
done:
    mc_free(seen);
    state_release(&s);
    return ret;
}

/* --- evaluate --- */

static PyObject *py_evaluate(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"layers", "lfloats", "params", "x", "y", "batch_size", "loss", "metric", "hook",
                             "sample_weight", NULL};
    PyObject *lo, *fo, *po, *xo, *yo, *losso, *mo, *hook = Py_None, *swo = Py_None;
    Py_ssize_t batch_size;
    int as_tuple;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOOnOO|OO:evaluate", kwlist, &lo, &fo, &po, &xo, &yo,
                                     &batch_size, &losso, &mo, &hook, &swo))
        return NULL;
    call_state s;
    memset(&s, 0, sizeof s);
    PyObject *ret = NULL;
    mc_loss_spec spec;
    mc_metrics metrics;
    if (check_batch_size(batch_size) < 0 || check_hook(hook) < 0) goto done;
    if (parse_metrics(mo, &metrics, &as_tuple) < 0 || parse_loss(losso, &metrics, &spec) < 0) goto done;
    if (parse_x(&s, xo, 1) < 0) goto done;
    if (parse_model(&s, lo, fo, po, NULL) < 0) goto done;
    if (parse_y(&s, yo, spec.kind) < 0 || parse_sw(&s, swo) < 0) goto done;

    hook_ctx hc = {hook, 0, 0, &metrics, as_tuple};
    mc_hook h = {py_progress, &hc, HOOK_INTERVAL};
    mc_sums sums = {0};
    mc_error err = {0};
    mc_status st;
    Py_BEGIN_ALLOW_THREADS
    st = mc_evaluate(&s.model, &s.data, (size_t)batch_size, &spec, &metrics, &h, &sums, &err);
    Py_END_ALLOW_THREADS
    if (finish(st, &err, &hc) < 0) goto done;
    ret = Py_BuildValue("(dNn)", sums.loss_sum,
                        metric_sums_object(&metrics, sums.metric_sums, sums.weight_sum, as_tuple),
                        (Py_ssize_t)sums.n_seen);
done:
    state_release(&s);
    return ret;
}

/* --- segments --- */

static PyObject *py_segments(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"layers", "lfloats", "params", NULL};
    PyObject *lo, *fo, *po;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO:segments", kwlist, &lo, &fo, &po)) return NULL;
    call_state s;
    memset(&s, 0, sizeof s);
    PyObject *ret = NULL;
    /* the input width is the first layer's own: the table alone is checked */
    PyArrayObject *tab = get_array(lo, "layers", NPY_INT64, -1, 2, 0);
    if (!tab) goto done;
    if (PyArray_DIM(tab, 0) > 0 && PyArray_DIM(tab, 1) == MC_TABLE_COLS) {
        const int64_t *r = PyArray_DATA(tab);
        if (r[MC_COL_IN_H] > 0 && r[MC_COL_IN_W] > 0 && r[MC_COL_IN_C] > 0)
            s.data.d = (size_t)r[MC_COL_IN_H] * (size_t)r[MC_COL_IN_W] * (size_t)r[MC_COL_IN_C];
    }
    if (parse_model(&s, lo, fo, po, NULL) < 0) goto done;
    const int64_t *segments;
    size_t S;
    if (derive_segments(&s, &segments, &S) < 0) goto done;
    npy_intp dims[2] = {(npy_intp)S, 2};
    ret = PyArray_SimpleNew(2, dims, NPY_INT64);
    if (ret) memcpy(PyArray_DATA((PyArrayObject *)ret), segments, 2 * S * sizeof *segments);
done:
    state_release(&s);
    return ret;
}

/* --- predict --- */

static PyObject *py_predict(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"layers", "lfloats", "params", "x", "out", "batch_size", "hook", "check_finite", NULL};
    PyObject *lo, *fo, *po, *xo, *oo, *hook = Py_None;
    Py_ssize_t batch_size;
    int check_finite = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOOn|Op:predict", kwlist, &lo, &fo, &po, &xo, &oo,
                                     &batch_size, &hook, &check_finite))
        return NULL;
    call_state s;
    memset(&s, 0, sizeof s);
    PyObject *ret = NULL;
    if (check_batch_size(batch_size) < 0 || check_hook(hook) < 0) goto done;
    if (parse_x(&s, xo, 1) < 0) goto done;
    s.data.check_finite = check_finite;
    PyArrayObject *xa = held_array(&s, 0);
    int i_params = s.n_held + 2;
    if (parse_model(&s, lo, fo, po, NULL) < 0) goto done;
    PyArrayObject *out = get_array(oo, "out", NPY_FLOAT32, -1, 2, 1);
    if (!out) goto done;
    hold(&s, out);
    size_t n = n_out_last(&s);
    if ((size_t)PyArray_DIM(out, 0) != s.data.N || (size_t)PyArray_DIM(out, 1) != n) {
        PyErr_Format(PyExc_ValueError, "out: expected shape (%zu, %zu) (rows of x, n_out of the last layer), got "
                     "(%zd, %zd)", s.data.N, n, (Py_ssize_t)PyArray_DIM(out, 0), (Py_ssize_t)PyArray_DIM(out, 1));
        goto done;
    }
    if (check_disjoint(out, "out", xa, "x") < 0 || check_disjoint(out, "out", held_array(&s, i_params), "params") < 0)
        goto done;

    hook_ctx hc = {hook, 0, 0, NULL, 0};
    mc_hook h = {py_progress, &hc, HOOK_INTERVAL};
    mc_error err = {0};
    mc_status st;
    float *outp = PyArray_DATA(out);
    Py_BEGIN_ALLOW_THREADS
    st = mc_predict(&s.model, &s.data, outp, (size_t)batch_size, &h, &err);
    Py_END_ALLOW_THREADS
    if (finish(st, &err, &hc) < 0) goto done;
    ret = Py_NewRef(Py_None);
done:
    state_release(&s);
    return ret;
}

/* --- loss_and_grad --- */

static PyObject *py_loss_and_grad(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"layers", "lfloats", "params", "grads", "x", "y", "loss", "seed", "training",
                             "sample_weight", NULL};
    PyObject *lo, *fo, *po, *go, *xo, *yo, *losso, *swo = Py_None;
    unsigned long long seed = 0;
    int training = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOOOO|KpO:loss_and_grad", kwlist, &lo, &fo, &po, &go, &xo,
                                     &yo, &losso, &seed, &training, &swo))
        return NULL;
    call_state s;
    memset(&s, 0, sizeof s);
    PyObject *ret = NULL, *dx = NULL;
    mc_loss_spec spec;
    if (parse_loss(losso, NULL, &spec) < 0) goto done;
    if (parse_x(&s, xo, 0) < 0) goto done;
    if (s.data.N == 0) {
        PyErr_SetString(PyExc_ValueError, "x: expected at least one row, got 0");
        goto done;
    }
    if (parse_model(&s, lo, fo, po, go) < 0) goto done;
    if (parse_y(&s, yo, spec.kind) < 0 || parse_sw(&s, swo) < 0) goto done;
    npy_intp dims[2] = {(npy_intp)s.data.N, (npy_intp)s.data.d};
    dx = PyArray_SimpleNew(2, dims, NPY_FLOAT32);
    if (!dx) goto done;
    float *dxp = PyArray_DATA((PyArrayObject *)dx);
    double loss = 0.0;
    mc_error err = {0};
    mc_status st;
    Py_BEGIN_ALLOW_THREADS
    st = mc_loss_and_grad(&s.model, s.data.x, s.data.N, s.data.y, s.data.labels, s.data.sw, &spec, (uint64_t)seed,
                          training, &loss, dxp, &err);
    Py_END_ALLOW_THREADS
    if (st != MC_OK) {
        raise_err(&err);
        goto done;
    }
    ret = Py_BuildValue("(dO)", loss, dx);
done:
    Py_XDECREF(dx);
    state_release(&s);
    return ret;
}

/* --- optimizer_step --- */

static PyObject *py_optimizer_step(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"opt", "hyper", "params", "grads", "segments", "slots", "iterations", NULL};
    PyObject *ho, *po, *go, *so, *slo, *io;
    int kind;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "iOOOOOO:optimizer_step", kwlist, &kind, &ho, &po, &go, &so, &slo,
                                     &io))
        return NULL;
    call_state s;
    memset(&s, 0, sizeof s);
    PyObject *ret = NULL;
    PyArrayObject *params = get_array(po, "params", NPY_FLOAT32, -1, 1, 1);
    if (!params) goto done;
    hold(&s, params);
    PyArrayObject *grads = get_array(go, "grads", NPY_FLOAT32, -1, 1, 0);
    if (!grads) goto done;
    hold(&s, grads);
    s.model.P = (size_t)PyArray_DIM(params, 0);
    if (check_len(grads, "grads", (npy_intp)s.model.P, "len(params)") < 0) goto done;
    if (check_disjoint(grads, "grads", params, "params") < 0) goto done;
    const int64_t *segments;
    size_t n_segments;
    if (parse_segments(&s, so, &segments, &n_segments) < 0) goto done;
    if (parse_opt(&s, kind, ho, segments, n_segments, slo, io, params, grads) < 0) goto done;
    float *pp = PyArray_DATA(params);
    const float *gp = PyArray_DATA(grads);
    Py_BEGIN_ALLOW_THREADS
    mc_optim_step(&s.opt, pp, gp, s.iterations);
    Py_END_ALLOW_THREADS
    ret = Py_NewRef(Py_None);
done:
    state_release(&s);
    return ret;
}

/* --- gemm --- */

static PyObject *py_gemm(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"trans_a", "trans_b", "alpha", "A", "B", "beta", "C", NULL};
    int ta, tb;
    double alpha, beta;
    PyObject *ao, *bo, *co;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "ppdOOdO:gemm", kwlist, &ta, &tb, &alpha, &ao, &bo, &beta, &co))
        return NULL;
    PyArrayObject *A = get_array(ao, "A", NPY_FLOAT32, -1, 2, 0);
    if (!A) return NULL;
    PyArrayObject *B = get_array(bo, "B", NPY_FLOAT32, -1, 2, 0);
    if (!B) return NULL;
    PyArrayObject *C = get_array(co, "C", NPY_FLOAT32, -1, 2, 1);
    if (!C) return NULL;
    size_t M = (size_t)PyArray_DIM(C, 0), N = (size_t)PyArray_DIM(C, 1);
    size_t am = (size_t)PyArray_DIM(A, ta ? 1 : 0), K = (size_t)PyArray_DIM(A, ta ? 0 : 1);
    size_t bk = (size_t)PyArray_DIM(B, tb ? 1 : 0), bn = (size_t)PyArray_DIM(B, tb ? 0 : 1);
    if (am != M || bk != K || bn != N) {
        PyErr_Format(PyExc_ValueError, "gemm: op(A) is (%zu, %zu) and op(B) is (%zu, %zu), which do not give C's "
                     "shape (%zu, %zu)", am, K, bk, bn, M, N);
        return NULL;
    }
    if (check_disjoint(C, "C", A, "A") < 0 || check_disjoint(C, "C", B, "B") < 0) return NULL;
    size_t lda = (size_t)PyArray_DIM(A, 1), ldb = (size_t)PyArray_DIM(B, 1);
    const float *ap = PyArray_DATA(A), *bp = PyArray_DATA(B);
    float *cp = PyArray_DATA(C);
    Py_INCREF(A);
    Py_INCREF(B);
    Py_INCREF(C);
    Py_BEGIN_ALLOW_THREADS
    mc_gemm(ta, tb, M, N, K, (float)alpha, ap, lda ? lda : 1, bp, ldb ? ldb : 1, (float)beta, cp, N ? N : 1);
    Py_END_ALLOW_THREADS
    Py_DECREF(A);
    Py_DECREF(B);
    Py_DECREF(C);
    Py_RETURN_NONE;
}

/* --- scans --- */

static PyObject *py_scan_floats(PyObject *self, PyObject *arg) {
    (void)self;
    if (PyArray_Check(arg) && PyArray_EquivTypenums(PyArray_DESCR((PyArrayObject *)arg)->type_num, NPY_UINT8)) {
        if (!get_array(arg, "x", NPY_UINT8, -1, -1, 0)) return NULL;
    } else if (!get_array(arg, "x", NPY_FLOAT32, NPY_FLOAT64, -1, 0)) {
        return NULL;
    }
    PyArrayObject *a = (PyArrayObject *)arg;
    int tn = PyArray_DESCR(a)->type_num;
    mc_scan_type type = PyArray_EquivTypenums(tn, NPY_FLOAT32) ? MC_SCAN_F32
                        : PyArray_EquivTypenums(tn, NPY_FLOAT64) ? MC_SCAN_F64 : MC_SCAN_U8;
    const void *p = PyArray_DATA(a);
    size_t n = (size_t)PyArray_SIZE(a);
    mc_scan_result r;
    Py_INCREF(a);
    Py_BEGIN_ALLOW_THREADS
    r = mc_scan(p, type, n);
    Py_END_ALLOW_THREADS
    Py_DECREF(a);
    return Py_BuildValue("(nndd)", (Py_ssize_t)r.n_nan, (Py_ssize_t)r.n_inf, r.lo, r.hi);
}

static PyObject *py_first_bad_label(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"y", "n_classes", NULL};
    PyObject *yo;
    Py_ssize_t n_classes;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "On:first_bad_label", kwlist, &yo, &n_classes)) return NULL;
    PyArrayObject *y = get_array(yo, "y", NPY_INT32, -1, -1, 0);
    if (!y) return NULL;
    const int32_t *p = PyArray_DATA(y);
    size_t n = (size_t)PyArray_SIZE(y);
    Py_ssize_t bad = -1;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < 0 || (Py_ssize_t)p[i] >= n_classes) {
            bad = (Py_ssize_t)i;
            break;
        }
    }
    return PyLong_FromSsize_t(bad);
}

PyMethodDef mc_py_train_methods[] = {
    {"train_epoch", (PyCFunction)(void (*)(void))py_train_epoch, METH_VARARGS | METH_KEYWORDS,
     "train_epoch(layers, lfloats, params, grads, x, y, perm, batch_size, loss, metric, opt, hyper, "
     "slots, iterations, seed, hook=None, every_batch=False, sample_weight=None) -> (loss_sum, metric_sum, n_seen, "
     "stopped)\n\nOne epoch of minibatch training in C with the GIL released (engine API). metric: an int code, "
     "its sum returned as a float, or a tuple of codes, (code, k) pairs and (code, k, weighted) triples, their "
     "sums returned as a tuple (a weighted metric's as the pair (sum(w * value), sum(w))); the hook gets "
     "hook(batch, loss_sum, metric_sum, n_seen) with metric_sum in the same form. sample_weight: float32 (N) "
     "weights of the per-sample losses and of the weighted metrics, gathered with the rows (None: ones); "
     "loss_sum is then sum(w * loss)."},
    {"segments", (PyCFunction)(void (*)(void))py_segments, METH_VARARGS | METH_KEYWORDS,
     "segments(layers, lfloats, params) -> int64 (S, 2) [offset, length]: the ranges train_epoch's optimizer "
     "updates (the trained weights of the layers with trainable = 1, in order, touching ones merged)."},
    {"evaluate", (PyCFunction)(void (*)(void))py_evaluate, METH_VARARGS | METH_KEYWORDS,
     "evaluate(layers, lfloats, params, x, y, batch_size, loss, metric, hook=None, sample_weight=None) -> "
     "(loss_sum, metric_sum, n); metric and sample_weight as in train_epoch."},
    {"predict", (PyCFunction)(void (*)(void))py_predict, METH_VARARGS | METH_KEYWORDS,
     "predict(layers, lfloats, params, x, out, batch_size, hook=None, check_finite=False) -> None; fills out "
     "(N, n_out). check_finite: ValueError for a float batch holding NaN/Inf, found as it is reached."},
    {"loss_and_grad", (PyCFunction)(void (*)(void))py_loss_and_grad, METH_VARARGS | METH_KEYWORDS,
     "loss_and_grad(layers, lfloats, params, grads, x, y, loss, seed=0, training=False, sample_weight=None) -> "
     "(loss, dx)\n\n"
     "One forward/backward over x as a single batch; grads of trainable layers overwritten."},
    {"optimizer_step", (PyCFunction)(void (*)(void))py_optimizer_step, METH_VARARGS | METH_KEYWORDS,
     "optimizer_step(opt, hyper, params, grads, segments, slots, iterations) -> None"},
    {"gemm", (PyCFunction)(void (*)(void))py_gemm, METH_VARARGS | METH_KEYWORDS,
     "gemm(trans_a, trans_b, alpha, A, B, beta, C) -> None; C = alpha op(A) op(B) + beta C in place."},
    {"scan_floats", py_scan_floats, METH_O,
     "scan_floats(x) -> (n_nan, n_inf, min, max) over a float32/float64/uint8 C-contiguous array "
     "(min/max ignore NaN; both NaN when no number is present)."},
    {"first_bad_label", (PyCFunction)(void (*)(void))py_first_bad_label, METH_VARARGS | METH_KEYWORDS,
     "first_bad_label(y, n_classes) -> index of the first label < 0 or >= n_classes in int32 y, or -1."},
    {NULL, NULL, 0, NULL},
};

/*
 * recctl._topk: exact top-K of every row of a float32 score block in one pass over the row.
 *
 * The compiled half of recctl/ranking.py's selection (docs/architecture.md, "The top-K kernel").
 * Plain CPython C API and the buffer protocol (no numpy headers, so it builds against any numpy);
 * the loop runs without the GIL, so the kernel's thread pool runs it on every core.
 *
 * Per row: a binary min-heap of the K best (score, item) pairs seen so far, its root the worst of
 * them; the root's score is the running threshold. Items are visited in increasing index order, so
 * an item that only ties the threshold is worse than every item already kept (ties go to the lower
 * index) and is skipped: an item enters iff its score is strictly above the threshold. Once the
 * heap holds K items, the row is read in chunks of CHUNK floats and a chunk is scanned item by item
 * only when one of its values beats the threshold (a vectorised compare-and-or); on random scores
 * that is a few dozen chunks per row, so the cost is about one streaming read of the row.
 *
 * Semantics (the same as the numpy path and a stable sort by descending score): NaN and -inf are
 * never selected (NaN > x and -inf > x are false for every threshold starting at -inf); rows with
 * fewer than K eligible items are padded with item -1 and score -inf.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* floats per chunk: 64 floats are 4 cache lines; a chunk is scanned only when it holds a winner */
#define CHUNK 64

typedef struct {
    float v;
    int64_t i;
} entry;

/* a ranks below b: a lower score, or the same score and a higher item index */
static inline int worse(const entry *a, const entry *b) {
    return a->v < b->v || (a->v == b->v && a->i > b->i);
}

static inline void sift_down(entry *heap, Py_ssize_t size, Py_ssize_t pos) {
    entry item = heap[pos];
    for (;;) {
        Py_ssize_t child = 2 * pos + 1;
        if (child >= size) break;
        if (child + 1 < size && worse(&heap[child + 1], &heap[child])) child++;
        if (!worse(&heap[child], &item)) break;
        heap[pos] = heap[child];
        pos = child;
    }
    heap[pos] = item;
}

static inline void sift_up(entry *heap, Py_ssize_t pos) {
    entry item = heap[pos];
    while (pos > 0) {
        Py_ssize_t parent = (pos - 1) / 2;
        if (!worse(&item, &heap[parent])) break;
        heap[pos] = heap[parent];
        pos = parent;
    }
    heap[pos] = item;
}

#if defined(__GNUC__) || defined(__clang__)
/* GCC/clang vector extensions: 8 floats per operation (one AVX register, two SSE2 or NEON ones) */
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

/* does any of the CHUNK floats at p compare strictly greater than thr? (NaN never does) */
static inline int any_above(const float *p, float thr) {
    v8f t = {thr, thr, thr, thr, thr, thr, thr, thr};
    v8i acc = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int c = 0; c < CHUNK; c += 8) {
        v8f x;
        memcpy(&x, p + c, sizeof x);
        acc |= (v8i)(x > t);
    }
    int32_t any = 0;
    for (int c = 0; c < 8; c++) any |= acc[c];
    return any != 0;
}
#else
static inline int any_above(const float *p, float thr) {
    int acc = 0;
    for (int c = 0; c < CHUNK; c++) acc |= p[c] > thr;
    return acc;
}
#endif

#if defined(__x86_64__) || defined(_M_X64)
#include <emmintrin.h>
#define HAVE_ABOVE_MASK 1
/* bit c set when p[c] > thr, for the CHUNK floats at p (SSE2, part of every x86-64) */
static inline uint64_t above_mask(const float *p, float thr) {
    __m128 t = _mm_set1_ps(thr);
    uint64_t bits = 0;
    for (int c = 0; c < CHUNK; c += 4) bits |= (uint64_t)_mm_movemask_ps(_mm_cmpgt_ps(_mm_loadu_ps(p + c), t)) << c;
    return bits;
}
#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
static inline int ctz64(uint64_t bits) {
    unsigned long index;
    _BitScanForward64(&index, bits);
    return (int)index;
}
#else
static inline int ctz64(uint64_t bits) { return __builtin_ctzll(bits); }
#endif
#endif

/* x86-64 ELF (Linux, BSD) with GCC or clang: row_top_k is compiled for AVX2 and for the baseline,
 * and the loader picks one per machine (ifunc); elsewhere one portable build */
#if defined(__x86_64__) && defined(__ELF__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define ROW_CLONES __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef ROW_CLONES
#define ROW_CLONES
#endif

/* offer item j with score v to a full heap whose root score is *thr */
static inline void offer(entry *heap, Py_ssize_t k, float v, int64_t j, float *thr) {
    if (v > *thr) {
        heap[0].v = v;
        heap[0].i = j;
        sift_down(heap, k, 0);
        *thr = heap[0].v;
    }
}

/* top-k of one row into items/top (best first, padded); heap has room for k entries */
ROW_CLONES static void row_top_k(const float *row, Py_ssize_t m, Py_ssize_t k, entry *heap, int64_t *items, float *top) {
    Py_ssize_t size = 0, j = 0;
    /* fill: the first k eligible items (score > -inf; NaN fails the comparison) */
    for (; j < m && size < k; j++) {
        float v = row[j];
        if (v > -INFINITY) {
            heap[size].v = v;
            heap[size].i = (int64_t)j;
            sift_up(heap, size);
            size++;
        }
    }
    if (size == k) {
        float thr = heap[0].v;
        /* whole chunks, then the tail item by item */
        for (; j + CHUNK <= m; j += CHUNK) {
            if (!any_above(row + j, thr)) continue;
#ifdef HAVE_ABOVE_MASK
            /* only the items above the threshold at the chunk's start (a superset of the winners:
             * the threshold only rises) */
            for (uint64_t bits = above_mask(row + j, thr); bits; bits &= bits - 1) {
                Py_ssize_t c = j + ctz64(bits);
                offer(heap, k, row[c], (int64_t)c, &thr);
            }
#else
            for (Py_ssize_t c = j; c < j + CHUNK; c++) offer(heap, k, row[c], (int64_t)c, &thr);
#endif
        }
        for (; j < m; j++) offer(heap, k, row[j], (int64_t)j, &thr);
    }
    /* heap sort: pop the worst into the last free slot, so slots [0, size) end best first */
    for (Py_ssize_t r = size - 1; r >= 0; r--) {
        items[r] = heap[0].i;
        top[r] = heap[0].v;
        heap[0] = heap[r];
        if (r > 0) sift_down(heap, r, 0);
    }
    for (Py_ssize_t r = size; r < k; r++) {
        items[r] = -1;
        top[r] = -INFINITY;
    }
}

/* the buffer's item format without a byte-order/size prefix ('@', '=', '<', '>', '!') */
static char format_char(const Py_buffer *view) {
    const char *f = view->format ? view->format : "B";
    while (*f == '@' || *f == '=' || *f == '<' || *f == '>' || *f == '!') f++;
    return f[0] != '\0' && f[1] == '\0' ? f[0] : '?';
}

/* check a buffer's format (int64 accepts 'l' or 'q'), dimensions and shape (-1: any length) */
static int check_buffer(const Py_buffer *view, const char *name, char fmt, int ndim, Py_ssize_t rows,
                        Py_ssize_t cols) {
    char got = format_char(view);
    int fmt_ok = fmt == 'q' ? ((got == 'l' || got == 'q') && view->itemsize == 8) : (got == fmt && view->itemsize == 4);
    if (view->ndim != ndim || !fmt_ok) {
        PyErr_Format(PyExc_TypeError, "%s: expected a %d-D C-contiguous %s buffer", name, ndim,
                     fmt == 'q' ? "int64" : "float32");
        return -1;
    }
    if ((rows >= 0 && view->shape[0] != rows) || (ndim == 2 && cols >= 0 && view->shape[1] != cols)) {
        PyErr_Format(PyExc_ValueError, "%s: shape (%zd, ...) does not match the score block (expected %zd rows%s)",
                     name, view->shape[0], rows, ndim == 2 ? " and k columns" : "");
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(select_f32_doc,
             "select_f32(scores, k, items, top, indptr=None, indices=None)\n--\n\n"
             "Write the exact top-k of every row of ``scores`` (float32, (n, m), C-contiguous) into\n"
             "``items`` (int64, (n, k)) and ``top`` (float32, (n, k)), best first; ties go to the lower\n"
             "item index; NaN and -inf are never selected; short rows are padded with -1 / -inf.\n"
             "``indptr`` (int64, n + 1) and ``indices`` (int64) are CSR rows of items to exclude: they\n"
             "are written to -inf in ``scores`` (which must then be writable) before the row is read.\n"
             "Runs without the GIL.");

static PyObject *select_f32(PyObject *self, PyObject *args) {
    PyObject *scores_obj, *items_obj, *top_obj, *indptr_obj = Py_None, *indices_obj = Py_None;
    Py_ssize_t k;
    (void)self;
    if (!PyArg_ParseTuple(args, "OnOO|OO:select_f32", &scores_obj, &k, &items_obj, &top_obj, &indptr_obj,
                          &indices_obj))
        return NULL;
    if (k < 1) {
        PyErr_SetString(PyExc_ValueError, "k must be at least 1");
        return NULL;
    }
    int excluding = indptr_obj != Py_None;
    if (excluding != (indices_obj != Py_None)) {
        PyErr_SetString(PyExc_TypeError, "indptr and indices go together");
        return NULL;
    }
    Py_buffer views[5];
    int held = 0;
    PyObject *result = NULL;
    entry *heap = NULL;
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT;
    if (PyObject_GetBuffer(scores_obj, &views[held], flags | (excluding ? PyBUF_WRITABLE : 0)) < 0) goto done;
    held++;
    if (PyObject_GetBuffer(items_obj, &views[held], flags | PyBUF_WRITABLE) < 0) goto done;
    held++;
    if (PyObject_GetBuffer(top_obj, &views[held], flags | PyBUF_WRITABLE) < 0) goto done;
    held++;
    if (excluding) {
        if (PyObject_GetBuffer(indptr_obj, &views[held], flags) < 0) goto done;
        held++;
        if (PyObject_GetBuffer(indices_obj, &views[held], flags) < 0) goto done;
        held++;
    }
    if (check_buffer(&views[0], "scores", 'f', 2, -1, -1) < 0) goto done;
    Py_ssize_t n = views[0].shape[0], m = views[0].shape[1];
    if (check_buffer(&views[1], "items", 'q', 2, n, k) < 0 || check_buffer(&views[2], "top", 'f', 2, n, k) < 0)
        goto done;
    const int64_t *indptr = NULL, *indices = NULL;
    if (excluding) {
        if (check_buffer(&views[3], "indptr", 'q', 1, n + 1, -1) < 0 ||
            check_buffer(&views[4], "indices", 'q', 1, -1, -1) < 0)
            goto done;
        indptr = (const int64_t *)views[3].buf;
        indices = (const int64_t *)views[4].buf;
        Py_ssize_t nnz = views[4].shape[0];
        /* checked before any write: offsets within indices, columns within the row */
        for (Py_ssize_t r = 0; r <= n; r++) {
            if (indptr[r] < indptr[0] || indptr[r] - indptr[0] > nnz || (r > 0 && indptr[r] < indptr[r - 1])) {
                PyErr_Format(PyExc_ValueError, "indptr[%zd] = %lld is out of order or beyond indices", r,
                             (long long)indptr[r]);
                goto done;
            }
        }
        for (Py_ssize_t e = 0; e < indptr[n] - indptr[0]; e++) {
            if (indices[e] < 0 || indices[e] >= m) {
                PyErr_Format(PyExc_ValueError, "excluded item %lld is outside the %zd columns of the block",
                             (long long)indices[e], m);
                goto done;
            }
        }
    }
    heap = (entry *)PyMem_RawMalloc((size_t)k * sizeof(entry));
    if (heap == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    {
        float *s = (float *)views[0].buf;
        int64_t *it = (int64_t *)views[1].buf;
        float *tp = (float *)views[2].buf;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t r = 0; r < n; r++) {
            float *row = s + r * m;
            if (indptr != NULL) {
                for (int64_t e = indptr[r] - indptr[0]; e < indptr[r + 1] - indptr[0]; e++) row[indices[e]] = -INFINITY;
            }
            row_top_k(row, m, k, heap, it + r * k, tp + r * k);
        }
        Py_END_ALLOW_THREADS
    }
    result = Py_NewRef(Py_None);
done:
    PyMem_RawFree(heap);
    while (held > 0) PyBuffer_Release(&views[--held]);
    return result;
}

static PyMethodDef methods[] = {
    {"select_f32", select_f32, METH_VARARGS, select_f32_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "recctl._topk",
    "Compiled top-K selection for recctl.ranking (see recctl/_topk.c).",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__topk(void) { return PyModule_Create(&module); }

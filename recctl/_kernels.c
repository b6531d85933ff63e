/*
 * recctl._kernels: recctl's compiled kernels, each with a numpy fallback in its Python module that
 * gives the same results (used when this extension is not built, or RECCTL_TOPK_SELECTION=numpy):
 *
 *   select_f32  exact top-K of every row of a float32 score block in one pass over the row, the
 *               selection of recctl/ranking.py (docs/architecture.md, "The top-K kernel");
 *   knn_rows    the top-N similarity rows of item-kNN and RP3beta (recctl/models/_similarity.py);
 *   build_code_table / lookup_codes
 *               id hash -> code tables (recctl/data/idcodes.py);
 *   aggregate_runs, counting_order
 *               preprocess's per-(user, item) aggregates and sort by user (recctl/data/preprocess.py).
 *
 * Plain CPython C API and the buffer protocol (no numpy headers, so it builds against any numpy);
 * the loops run without the GIL, so the callers' thread pools run them on every core.
 *
 * select_f32, per row: a binary min-heap of the K best (score, item) pairs seen so far, its root the worst of
 * them; the root's score is the running threshold. Items are visited in increasing index order, so
 * an item that only ties the threshold is worse than every item already kept (ties go to the lower
 * index) and is skipped: an item enters iff its score is strictly above the threshold. Once the
 * heap holds K items, the row is read in chunks of CHUNK floats and a chunk is looked into only when
 * one of its values beats the threshold (a vectorised compare-and-or); then only its items above the
 * threshold are offered (a bit mask on x86-64, item by item elsewhere). On random scores that is
 * about 50 of a 50,000-item row's 782 chunks, so the cost is about one streaming read of the row.
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

/*
 * knn_rows: top-N cosine (or dot-product) neighbours of entity rows, fused (recctl/models/_similarity.py).
 *
 * For each requested row i of A (entities x features, CSR) the row of A @ B (B = A's transpose as
 * CSR) is accumulated into a dense array of one float per entity, in the order scipy's SMMP product
 * (csr_matmat) adds the same terms, so every dot product is the same float32 value; the touched
 * columns are remembered in a list. Those entries then become cosines dot / (|a_i| |a_k| + shrink)
 * (the same float32 operations as the numpy path), the entity itself and non-positive values are
 * dropped, and a heap keeps the N best (ties to the lower column). Nothing the size of the product is
 * ever written: per call, one float, one int and one byte per entity are the whole workspace.
 */

/* the heap holds (value, column) pairs as `entry`s (score, index) and ranks them with `worse`, as
 * select_f32 does: a lower value, or the same value and a higher column, ranks below */

/* a 1-D C-contiguous buffer of the type `fmt` names, as the struct module spells it: 'q' int64,
 * 'Q' uint64, 'i' int32, 'I' uint32, 'B' uint8, 'f' float32, 'd' float64 (a C long of the same size is
 * accepted for the integer types); -1 length: any */
static int check_vector(const Py_buffer *view, const char *name, char fmt, Py_ssize_t length) {
    char got = format_char(view);
    int ok;
    const char *type;
    switch (fmt) {
        case 'q': ok = (got == 'l' || got == 'q') && view->itemsize == 8; type = "int64"; break;
        case 'Q': ok = (got == 'L' || got == 'Q') && view->itemsize == 8; type = "uint64"; break;
        case 'i': ok = (got == 'i' || got == 'l') && view->itemsize == 4; type = "int32"; break;
        case 'I': ok = (got == 'I' || got == 'L') && view->itemsize == 4; type = "uint32"; break;
        case 'B': ok = got == 'B' && view->itemsize == 1; type = "uint8"; break;
        case 'd': ok = got == 'd' && view->itemsize == 8; type = "float64"; break;
        default: ok = got == 'f' && view->itemsize == 4; type = "float32"; break;
    }
    if (view->ndim != 1 || !ok) {
        PyErr_Format(PyExc_TypeError, "%s: expected a 1-D C-contiguous %s buffer", name, type);
        return -1;
    }
    if (length >= 0 && view->shape[0] != length) {
        PyErr_Format(PyExc_ValueError, "%s: length %zd, expected %zd", name, view->shape[0], length);
        return -1;
    }
    return 0;
}

/* CSR structure: indptr non-decreasing within [0, nnz], every index in [0, n_cols) */
static int check_csr(const int32_t *indptr, Py_ssize_t n_rows, const int32_t *indices, Py_ssize_t nnz,
                     Py_ssize_t n_cols, const char *name) {
    if (indptr[0] < 0 || indptr[n_rows] > nnz) {
        PyErr_Format(PyExc_ValueError, "%s: indptr points outside its %zd entries", name, nnz);
        return -1;
    }
    for (Py_ssize_t r = 0; r < n_rows; r++) {
        if (indptr[r + 1] < indptr[r]) {
            PyErr_Format(PyExc_ValueError, "%s: indptr decreases at row %zd", name, r);
            return -1;
        }
    }
    int32_t lo = 0, hi = 0;
    for (Py_ssize_t e = indptr[0]; e < indptr[n_rows]; e++) {
        lo = indices[e] < lo ? indices[e] : lo;
        hi = indices[e] > hi ? indices[e] : hi;
    }
    if (lo < 0 || (indptr[n_rows] > indptr[0] && hi >= n_cols)) {
        PyErr_Format(PyExc_ValueError, "%s: a column index is outside [0, %zd)", name, n_cols);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(knn_rows_doc,
             "knn_rows(a_indptr, a_indices, a_data, b_indptr, b_indices, b_data, rows, norms, shrink, keep,\n"
             "         out_indices, out_data, out_counts)\n--\n\n"
             "Top-``keep`` neighbours of the entity rows ``rows`` (int64) of ``A @ B``, where ``A`` is the\n"
             "(n x d) CSR of entity vectors and ``B`` its (d x n) transpose as CSR (int32 index arrays,\n"
             "float32 values). With ``norms`` (float32, n) entries are cosines ``dot / (norms[i] * norms[k] +\n"
             "shrink)``, else dot products; the entity itself and values <= 0 are never kept; ties go to the\n"
             "lower column. Row ``r`` of ``rows`` writes its ``out_counts[r]`` entries, by column, to\n"
             "``out_indices`` (int32) / ``out_data`` (float32) right after row ``r - 1``'s (the rows' entries\n"
             "are packed from the start; ``keep`` slots per row is room enough). Runs without the GIL.");

/* no fused multiply-add: the products and sums must round as scipy's and numpy's separate float32
 * operations do (x86-64's baseline has no FMA, but aarch64's has, and GCC contracts by default) */
#if defined(__clang__)
#define NO_FP_CONTRACT _Pragma("clang fp contract(off)")
#define NO_FP_CONTRACT_ATTR
#elif defined(__GNUC__)
#define NO_FP_CONTRACT
#define NO_FP_CONTRACT_ATTR __attribute__((optimize("fp-contract=off")))
#else
#define NO_FP_CONTRACT
#define NO_FP_CONTRACT_ATTR
#endif

NO_FP_CONTRACT_ATTR static PyObject *knn_rows(PyObject *self, PyObject *args) {
    NO_FP_CONTRACT
    PyObject *obj[12];
    float shrink;
    Py_ssize_t keep;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOOOOOfnOOO:knn_rows", &obj[0], &obj[1], &obj[2], &obj[3], &obj[4], &obj[5],
                          &obj[6], &obj[7], &shrink, &keep, &obj[8], &obj[9], &obj[10]))
        return NULL;
    if (keep < 1) {
        PyErr_SetString(PyExc_ValueError, "keep must be at least 1");
        return NULL;
    }
    /* buffers: 0-2 A, 3-5 B, 6 rows, 7 norms (optional), 8-10 outputs */
    static const char fmts[11] = {'i', 'i', 'f', 'i', 'i', 'f', 'q', 'f', 'i', 'f', 'i'};
    static const char *names[11] = {"a_indptr", "a_indices", "a_data", "b_indptr", "b_indices", "b_data",
                                    "rows",     "norms",     "out_indices", "out_data", "out_counts"};
    PyObject *src[11] = {obj[0], obj[1], obj[2], obj[3], obj[4], obj[5], obj[6], obj[7], obj[8], obj[9], obj[10]};
    Py_buffer views[11];
    int got[11] = {0};
    PyObject *result = NULL;
    float *sums = NULL;
    int32_t *touched = NULL;
    unsigned char *seen = NULL;
    entry *heap = NULL;
    int cosine = src[7] != Py_None;
    for (int b = 0; b < 11; b++) {
        if (b == 7 && !cosine) continue;
        if (PyObject_GetBuffer(src[b], &views[b], PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (b >= 8 ? PyBUF_WRITABLE : 0)) <
            0)
            goto done;
        got[b] = 1;
        if (check_vector(&views[b], names[b], fmts[b], -1) < 0) goto done;
    }
    Py_ssize_t n = views[0].shape[0] - 1, d = views[3].shape[0] - 1, n_rows = views[6].shape[0];
    if (n < 0 || d < 0 || check_vector(&views[2], "a_data", 'f', views[1].shape[0]) < 0 ||
        check_vector(&views[5], "b_data", 'f', views[4].shape[0]) < 0 ||
        (cosine && check_vector(&views[7], "norms", 'f', n) < 0) ||
        check_vector(&views[8], "out_indices", 'i', n_rows * keep) < 0 ||
        check_vector(&views[9], "out_data", 'f', n_rows * keep) < 0 ||
        check_vector(&views[10], "out_counts", 'i', n_rows) < 0)
        goto done;
    const int32_t *ap = views[0].buf, *aj = views[1].buf, *bp = views[3].buf, *bj = views[4].buf;
    const float *ax = views[2].buf, *bx = views[5].buf;
    const int64_t *rows = views[6].buf;
    if (check_csr(ap, n, aj, views[1].shape[0], d, "A") < 0 || check_csr(bp, d, bj, views[4].shape[0], n, "B") < 0)
        goto done;
    for (Py_ssize_t r = 0; r < n_rows; r++) {
        if (rows[r] < 0 || rows[r] >= n) {
            PyErr_Format(PyExc_ValueError, "rows[%zd] = %lld is not a row of A (%zd rows)", r, (long long)rows[r], n);
            goto done;
        }
    }
    sums = (float *)PyMem_RawCalloc((size_t)n + 1, sizeof(float));
    touched = (int32_t *)PyMem_RawMalloc(((size_t)n + 1) * sizeof(int32_t));
    seen = (unsigned char *)PyMem_RawCalloc((size_t)n + 1, 1);
    heap = (entry *)PyMem_RawMalloc((size_t)keep * sizeof(entry));
    if (sums == NULL || touched == NULL || seen == NULL || heap == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    {
        const float *norms = cosine ? views[7].buf : NULL;
        int32_t *out_indices = views[8].buf, *out_counts = views[10].buf;
        float *out_data = views[9].buf;
        Py_ssize_t written = 0;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t r = 0; r < n_rows; r++) {
            int64_t i = rows[r];
            Py_ssize_t n_touched = 0, size = 0;
            /* the row of the product, term by term as scipy's csr_matmat adds them */
            for (int32_t jj = ap[i]; jj < ap[i + 1]; jj++) {
                int32_t j = aj[jj];
                float a = ax[jj];
                for (int32_t kk = bp[j]; kk < bp[j + 1]; kk++) {
                    int32_t k = bj[kk];
                    sums[k] += a * bx[kk];
                    if (!seen[k]) {
                        seen[k] = 1;
                        touched[n_touched++] = k;
                    }
                }
            }
            float row_norm = cosine ? norms[i] : 0.0f;
            for (Py_ssize_t t = 0; t < n_touched; t++) {
                int32_t k = touched[t];
                float v = sums[k];
                sums[k] = 0.0f;
                seen[k] = 0;
                if (k == i) continue;
                if (cosine) {
                    float den = row_norm * norms[k];
                    den = den + shrink;
                    v = den > 0.0f ? v / den : 0.0f;
                }
                if (!(v > 0.0f)) continue;
                entry e = {v, k};
                if (size < keep) {
                    heap[size] = e;
                    sift_up(heap, size);
                    size++;
                } else if (worse(&heap[0], &e)) {
                    heap[0] = e;
                    sift_down(heap, size, 0);
                }
            }
            /* the kept entries by column (insertion sort: keep is small) */
            for (Py_ssize_t p = 1; p < size; p++) {
                entry e = heap[p];
                Py_ssize_t q = p;
                for (; q > 0 && heap[q - 1].i > e.i; q--) heap[q] = heap[q - 1];
                heap[q] = e;
            }
            for (Py_ssize_t p = 0; p < size; p++) {
                out_indices[written + p] = (int32_t)heap[p].i;
                out_data[written + p] = heap[p].v;
            }
            written += size;
            out_counts[r] = (int32_t)size;
        }
        Py_END_ALLOW_THREADS
    }
    result = Py_NewRef(Py_None);
done:
    PyMem_RawFree(sums);
    PyMem_RawFree(touched);
    PyMem_RawFree(seen);
    PyMem_RawFree(heap);
    for (int b = 10; b >= 0; b--)
        if (got[b]) PyBuffer_Release(&views[b]);
    return result;
}

/*
 * build_code_table / lookup_codes, aggregate_runs and counting_order: the id codes, per-(user, item) aggregates
 * and events sorted by user (recctl/data/idcodes.py, recctl/data/preprocess.py), each with its numpy /
 * polars fallback there.
 */

/* acquire `obj`'s buffer as a 1-D vector of type `fmt` (see check_vector); 0 or -1 with an error set */
static int acquire(PyObject *obj, Py_buffer *view, const char *name, char fmt, Py_ssize_t length, int writable) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0)) < 0)
        return -1;
    if (check_vector(view, name, fmt, length) < 0) {
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* an open-addressing table of (key, code) slots: two uint64 per slot, code EMPTY_CODE when free;
 * 16 bytes, one cache line per probe. The caller owns the table (a numpy array), so it is built
 * once and looked up any number of times */
#define EMPTY_CODE UINT64_MAX
/* hashes in flight at once: their slots are prefetched a batch ahead, so the table's cache misses overlap */
#define LOOKUP_BATCH 16
static const uint64_t CODE_MULT = 0x9E3779B97F4A7C15ULL; /* multiplicative hashing: the slot is the top bits */

/* the table's slot count (a power of two) from its length, or -1 with an error set */
static int table_bits(const Py_buffer *view, Py_ssize_t at_least) {
    Py_ssize_t slots = view->shape[0] / 2;
    int bits = 0;
    while (((Py_ssize_t)1 << bits) < slots) bits++;
    if (view->shape[0] != 2 * ((Py_ssize_t)1 << bits) || slots < at_least || bits < 1 || bits > 62) {
        PyErr_Format(PyExc_ValueError, "table: %zd entries; expected 2 x a power of two of at least %zd slots",
                     view->shape[0], at_least);
        return -1;
    }
    return bits;
}

PyDoc_STRVAR(build_code_table_doc,
             "build_code_table(keys, table)\n--\n\n"
             "Fill ``table`` (uint64, 2 x S entries, S a power of two >= 2 x len(keys)) with the open-\n"
             "addressing table of ``keys`` (uint64, distinct): key ``keys[c]`` gets code ``c`` (linear\n"
             "probing, at most half full). Raises ValueError when ``keys`` repeat a value.");

static PyObject *build_code_table(PyObject *self, PyObject *args) {
    PyObject *keys_obj, *table_obj, *result = NULL;
    Py_buffer keys_view, table_view;
    int held = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO:build_code_table", &keys_obj, &table_obj)) return NULL;
    if (acquire(keys_obj, &keys_view, "keys", 'Q', -1, 0) < 0) goto done;
    held = 1;
    if (acquire(table_obj, &table_view, "table", 'Q', -1, 1) < 0) goto done;
    held = 2;
    Py_ssize_t n = keys_view.shape[0];
    int bits = table_bits(&table_view, 2 * n);
    if (bits < 0) goto done;
    if ((uint64_t)n >= (uint64_t)UINT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "keys: at most 2**32 - 2 keys");
        goto done;
    }
    const uint64_t *keys = keys_view.buf;
    uint64_t *table = table_view.buf, mask = ((uint64_t)1 << bits) - 1;
    int shift = 64 - bits;
    Py_ssize_t repeated = -1;
    Py_BEGIN_ALLOW_THREADS
    for (uint64_t s = 0; s <= mask; s++) table[2 * s + 1] = EMPTY_CODE;
    for (Py_ssize_t c = 0; c < n && repeated < 0; c++) {
        uint64_t s = (keys[c] * CODE_MULT) >> shift;
        while (table[2 * s + 1] != EMPTY_CODE) {
            if (table[2 * s] == keys[c]) {
                repeated = c;
                break;
            }
            s = (s + 1) & mask;
        }
        table[2 * s] = keys[c];
        table[2 * s + 1] = (uint64_t)c;
    }
    Py_END_ALLOW_THREADS
    if (repeated >= 0) {
        PyErr_Format(PyExc_ValueError, "keys: the value at %zd repeats an earlier key", repeated);
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
    if (held >= 2) PyBuffer_Release(&table_view);
    if (held >= 1) PyBuffer_Release(&keys_view);
    return result;
}

PyDoc_STRVAR(lookup_codes_doc,
             "lookup_codes(table, query, out, missing)\n--\n\n"
             "Write into ``out`` (uint32, len(query)) the code of every value of ``query`` (uint64) in\n"
             "``table`` (from build_code_table), or ``missing`` for a value not in it. Runs without\n"
             "the GIL.");

static PyObject *lookup_codes(PyObject *self, PyObject *args) {
    PyObject *table_obj, *query_obj, *out_obj, *result = NULL;
    Py_buffer table_view, query_view, out_view;
    unsigned long missing;
    int held = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOk:lookup_codes", &table_obj, &query_obj, &out_obj, &missing)) return NULL;
    if (acquire(table_obj, &table_view, "table", 'Q', -1, 0) < 0) goto done;
    held = 1;
    if (acquire(query_obj, &query_view, "query", 'Q', -1, 0) < 0) goto done;
    held = 2;
    if (acquire(out_obj, &out_view, "out", 'I', query_view.shape[0], 1) < 0) goto done;
    held = 3;
    int bits = table_bits(&table_view, 1);
    if (bits < 0) goto done;
    const uint64_t *table = table_view.buf, *query = query_view.buf, mask = ((uint64_t)1 << bits) - 1;
    uint32_t *out = out_view.buf;
    Py_ssize_t m = query_view.shape[0];
    int shift = 64 - bits;
    Py_BEGIN_ALLOW_THREADS
    uint64_t slots[LOOKUP_BATCH];
    for (Py_ssize_t lo = 0; lo < m; lo += LOOKUP_BATCH) {
        Py_ssize_t size = m - lo < LOOKUP_BATCH ? m - lo : LOOKUP_BATCH;
        for (Py_ssize_t b = 0; b < size; b++) {
            slots[b] = (query[lo + b] * CODE_MULT) >> shift;
            __builtin_prefetch(&table[2 * slots[b]]);
        }
        for (Py_ssize_t b = 0; b < size; b++) {
            uint64_t s = slots[b], q = query[lo + b];
            uint32_t code = (uint32_t)missing;
            for (; table[2 * s + 1] != EMPTY_CODE; s = (s + 1) & mask) {
                if (table[2 * s] == q) {
                    code = (uint32_t)table[2 * s + 1];
                    break;
                }
            }
            out[lo + b] = code;
        }
    }
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    if (held >= 3) PyBuffer_Release(&out_view);
    if (held >= 2) PyBuffer_Release(&query_view);
    if (held >= 1) PyBuffer_Release(&table_view);
    return result;
}

/*
 * aggregate_runs: one row per (user, item) pair of the selected events, from events grouped by user
 * (in time order within a user where the last weight is asked for), without sorting them by pair. Per user (a run of events), each selected event finds its
 * item's slot through a per-item stamp (the user's number + 1 when the item was met in this run),
 * so a pair's events fold into one slot in event order: the weights are summed, maxed or the last
 * one kept, the latest time kept. The user's slots are then ordered by item (insertion sort for
 * the usual few, qsort beyond) and appended: the output is in (user, item) order, as a stable sort
 * by pair followed by a group-by in order gives.
 */

#define AGG_SUM 0
#define AGG_MAX 1
#define AGG_LAST 2
/* runs of at most this many pairs are ordered by insertion sort */
#define SMALL_RUN 32

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

PyDoc_STRVAR(aggregate_runs_doc,
             "aggregate_runs(indptr, items, labels, weights, times, n_items, select, how,\n"
             "               out_users, out_items, out_weights, out_last)\n--\n\n"
             "Aggregate the events whose label bit is set in ``select`` (event e is selected when\n"
             "``select >> labels[e] & 1``) to one row per (user, item), written in (user, item) order;\n"
             "returns the number of rows. Events are grouped by user: user u's are\n"
             "``indptr[u]:indptr[u + 1]`` (int64); with how 2, in time order (``times``, int64). ``items``\n"
             "int32 in [0, n_items), ``labels`` uint8, ``weights`` float64. ``how``: 0 sum, 1 max, 2 the\n"
             "last event's weight (in event order). Outputs: ``out_users`` / ``out_items`` int32,\n"
             "``out_weights`` float64, ``out_last`` int64 (the pair's latest time), each at least as long as\n"
             "the selected events. ``labels`` None selects every event; ``weights`` and ``out_weights``,\n"
             "``times`` and ``out_last`` may be None together (the distinct pairs alone). Raises ValueError\n"
             "on an item out of range, or times out of order with how 2.\n"
             "Runs without the GIL.");

static PyObject *aggregate_runs(PyObject *self, PyObject *args) {
    PyObject *o[9], *result = NULL;
    Py_ssize_t n_items;
    unsigned long select;
    int how;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOOnkiOOOO:aggregate_runs", &o[0], &o[1], &o[2], &o[3], &o[4], &n_items, &select,
                          &how, &o[5], &o[6], &o[7], &o[8]))
        return NULL;
    if (how < AGG_SUM || how > AGG_LAST || n_items < 0 || n_items > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "how must be 0 (sum), 1 (max) or 2 (last); n_items in [0, 2**31)");
        return NULL;
    }
    static const char fmts[9] = {'q', 'i', 'B', 'd', 'q', 'i', 'i', 'd', 'q'};
    static const char *names[9] = {"indptr", "items", "labels", "weights", "times",
                                   "out_users", "out_items", "out_weights", "out_last"};
    Py_buffer views[9];
    int got[9] = {0};
    int32_t *stamp = NULL, *slot_of = NULL, *run_items = NULL;
    double *run_weights = NULL;
    int64_t *run_last = NULL;
    uint64_t *order = NULL;
    /* labels, weights and times may be None (every event selected; no weights / times read or written,
     * with their outputs None too) */
    if ((o[3] == Py_None) != (o[7] == Py_None) || (o[4] == Py_None) != (o[8] == Py_None) ||
        (how == AGG_LAST && (o[3] == Py_None || o[4] == Py_None))) {
        PyErr_SetString(PyExc_ValueError,
                        "weights and out_weights, times and out_last go together (and how 2 needs both)");
        return NULL;
    }
    for (int b = 0; b < 9; b++) {
        if (o[b] == Py_None && (b == 2 || b == 3 || b == 4 || b == 7 || b == 8)) continue;
        Py_ssize_t length = b >= 2 && b <= 4 ? views[1].shape[0] : -1;
        if (acquire(o[b], &views[b], names[b], fmts[b], length, b >= 5) < 0) goto done;
        got[b] = 1;
    }
    Py_ssize_t n_users = views[0].shape[0] - 1, n = views[1].shape[0], cap = views[5].shape[0];
    for (int b = 6; b < 9; b++)
        if (got[b] && views[b].shape[0] < cap) cap = views[b].shape[0];
    const int64_t *indptr = views[0].buf, *times = got[4] ? views[4].buf : NULL;
    const int32_t *items = views[1].buf;
    const uint8_t *labels = got[2] ? views[2].buf : NULL;
    const double *weights = got[3] ? views[3].buf : NULL;
    if (n_users < 0 || indptr[0] != 0 || indptr[n_users] != n) {
        PyErr_Format(PyExc_ValueError, "indptr: must run from 0 to the %zd events", n);
        goto done;
    }
    Py_ssize_t longest = 0;
    for (Py_ssize_t u = 0; u < n_users; u++) {
        if (indptr[u + 1] < indptr[u]) {
            PyErr_Format(PyExc_ValueError, "indptr: decreases at user %zd", u);
            goto done;
        }
        if (indptr[u + 1] - indptr[u] > longest) longest = indptr[u + 1] - indptr[u];
    }
    stamp = (int32_t *)PyMem_RawCalloc((size_t)n_items + 1, sizeof(int32_t));
    slot_of = (int32_t *)PyMem_RawMalloc(((size_t)n_items + 1) * sizeof(int32_t));
    run_items = (int32_t *)PyMem_RawMalloc(((size_t)longest + 1) * sizeof(int32_t));
    run_weights = (double *)PyMem_RawMalloc(((size_t)longest + 1) * sizeof(double));
    run_last = (int64_t *)PyMem_RawMalloc(((size_t)longest + 1) * sizeof(int64_t));
    order = (uint64_t *)PyMem_RawMalloc(((size_t)longest + 1) * sizeof(uint64_t));
    if (!stamp || !slot_of || !run_items || !run_weights || !run_last || !order) {
        PyErr_NoMemory();
        goto done;
    }
    int32_t *out_users = views[5].buf, *out_items = views[6].buf;
    double *out_weights = got[7] ? views[7].buf : NULL;
    int64_t *out_last = got[8] ? views[8].buf : NULL;
    Py_ssize_t written = 0, bad_item = -1, bad_time = -1, full = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t u = 0; u < n_users && bad_item < 0 && bad_time < 0 && !full; u++) {
        /* stamps are per user: u + 1 marks "met in this run" (the stamps start at 0); a user number
         * past INT32_MAX - 1 would wrap, so the stamps are reset then */
        int32_t mark = (int32_t)(u % (INT32_MAX - 1)) + 1;
        if (mark == 1 && u > 0) memset(stamp, 0, ((size_t)n_items + 1) * sizeof(int32_t));
        Py_ssize_t count = 0;
        for (int64_t e = indptr[u]; e < indptr[u + 1]; e++) {
            if (how == AGG_LAST && e > indptr[u] && times[e] < times[e - 1]) {
                bad_time = e;
                break;
            }
            if (labels && !((select >> labels[e]) & 1UL)) continue;
            int32_t item = items[e];
            if (item < 0 || item >= n_items) {
                bad_item = e;
                break;
            }
            if (stamp[item] != mark) {
                stamp[item] = mark;
                slot_of[item] = (int32_t)count;
                run_items[count] = item;
                if (weights) run_weights[count] = weights[e];
                if (times) run_last[count] = times[e];
                count++;
                continue;
            }
            Py_ssize_t s = slot_of[item];
            if (weights) {
                double w = weights[e];
                if (how == AGG_SUM)
                    run_weights[s] += w;
                else if (how == AGG_MAX)
                    run_weights[s] = w > run_weights[s] ? w : run_weights[s];
                else
                    run_weights[s] = w;
            }
            if (times && times[e] > run_last[s]) run_last[s] = times[e];
        }
        if (written + count > cap) {
            full = 1;
            break;
        }
        /* the run's pairs by item: item in the high half, slot in the low half of one key */
        for (Py_ssize_t s = 0; s < count; s++) order[s] = ((uint64_t)(uint32_t)run_items[s] << 32) | (uint64_t)s;
        if (count <= SMALL_RUN) {
            for (Py_ssize_t s = 1; s < count; s++) {
                uint64_t key = order[s];
                Py_ssize_t q = s;
                for (; q > 0 && order[q - 1] > key; q--) order[q] = order[q - 1];
                order[q] = key;
            }
        } else {
            qsort(order, (size_t)count, sizeof(uint64_t), cmp_u64);
        }
        for (Py_ssize_t s = 0; s < count; s++) {
            Py_ssize_t from = (Py_ssize_t)(order[s] & 0xFFFFFFFFULL);
            out_users[written + s] = (int32_t)u;
            out_items[written + s] = run_items[from];
            if (out_weights) out_weights[written + s] = run_weights[from];
            if (out_last) out_last[written + s] = run_last[from];
        }
        written += count;
    }
    Py_END_ALLOW_THREADS
    if (bad_time >= 0) {
        PyErr_Format(PyExc_ValueError, "times: event %zd is earlier than the one before it of the same user "
                     "(the events must be in (user, time) order)", bad_time);
        goto done;
    }
    if (bad_item >= 0) {
        PyErr_Format(PyExc_ValueError, "items: event %zd's item %d is outside [0, %zd)", bad_item,
                     (int)items[bad_item], n_items);
        goto done;
    }
    if (full) {
        PyErr_Format(PyExc_ValueError, "out_*: %zd rows are too few for the pairs", cap);
        goto done;
    }
    result = PyLong_FromSsize_t(written);
done:
    PyMem_RawFree(stamp);
    PyMem_RawFree(slot_of);
    PyMem_RawFree(run_items);
    PyMem_RawFree(run_weights);
    PyMem_RawFree(run_last);
    PyMem_RawFree(order);
    for (int b = 8; b >= 0; b--)
        if (got[b]) PyBuffer_Release(&views[b]);
    return result;
}

PyDoc_STRVAR(counting_order_doc,
             "counting_order(keys, n_keys, order, indptr)\n--\n\n"
             "Write into ``order`` (uint32, len(keys)) the stable sorting permutation of ``keys``\n"
             "(uint32, each below ``n_keys``), and into ``indptr`` (int64, n_keys + 1) where each key's\n"
             "run starts in the sorted order: a counting sort, two passes. Raises ValueError on a key\n"
             "out of range. Runs without the GIL.");

static PyObject *counting_order(PyObject *self, PyObject *args) {
    PyObject *keys_obj, *order_obj, *indptr_obj, *result = NULL;
    Py_ssize_t n_keys;
    Py_buffer views[3];
    int held = 0;
    int64_t *next = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "OnOO:counting_order", &keys_obj, &n_keys, &order_obj, &indptr_obj)) return NULL;
    if (acquire(keys_obj, &views[0], "keys", 'I', -1, 0) < 0) goto done;
    held = 1;
    Py_ssize_t n = views[0].shape[0];
    if (n_keys < 0 || (uint64_t)n > (uint64_t)UINT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "n_keys must be >= 0 and keys at most 2**32 long");
        goto done;
    }
    if (acquire(order_obj, &views[1], "order", 'I', n, 1) < 0) goto done;
    held = 2;
    if (acquire(indptr_obj, &views[2], "indptr", 'q', n_keys + 1, 1) < 0) goto done;
    held = 3;
    next = (int64_t *)PyMem_RawCalloc((size_t)n_keys + 1, sizeof(int64_t));
    if (next == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    const uint32_t *keys = views[0].buf;
    uint32_t *order = views[1].buf;
    int64_t *indptr = views[2].buf;
    Py_ssize_t bad = -1;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        if (keys[i] >= (uint64_t)n_keys) {
            bad = i;
            break;
        }
        next[keys[i]]++;
    }
    if (bad < 0) {
        int64_t start = 0;
        for (Py_ssize_t k = 0; k < n_keys; k++) {
            int64_t count = next[k];
            indptr[k] = start;
            next[k] = start;
            start += count;
        }
        indptr[n_keys] = start;
        for (Py_ssize_t i = 0; i < n; i++) order[next[keys[i]]++] = (uint32_t)i;
    }
    Py_END_ALLOW_THREADS
    if (bad >= 0) {
        PyErr_Format(PyExc_ValueError, "keys: the key at %zd (%u) is not below n_keys (%zd)", bad,
                     ((const uint32_t *)views[0].buf)[bad], n_keys);
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
    PyMem_RawFree(next);
    while (held > 0) PyBuffer_Release(&views[--held]);
    return result;
}

static PyMethodDef methods[] = {
    {"select_f32", select_f32, METH_VARARGS, select_f32_doc},
    {"knn_rows", knn_rows, METH_VARARGS, knn_rows_doc},
    {"build_code_table", build_code_table, METH_VARARGS, build_code_table_doc},
    {"lookup_codes", lookup_codes, METH_VARARGS, lookup_codes_doc},
    {"aggregate_runs", aggregate_runs, METH_VARARGS, aggregate_runs_doc},
    {"counting_order", counting_order, METH_VARARGS, counting_order_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "recctl._kernels",
    "recctl's compiled kernels: top-K selection (select_f32), item-kNN similarity rows (knn_rows), id codes "
    "(build_code_table, lookup_codes), per-pair aggregates (aggregate_runs) and a counting sort (counting_order).",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }

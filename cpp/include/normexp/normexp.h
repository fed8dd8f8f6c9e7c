/* normexp C API: softmax, log_softmax and logsumexp over the rows of a row-major matrix, and attention
 * (contiguous tensors or a paged KV cache).
 *
 * Valid C99 (and C++). Every function that can fail returns an int status: NORMEXP_OK (0) on
 * success, one of the normexp_status codes below otherwise. Nothing else reports errors: no
 * exception, abort or signal ever leaves these functions, whatever the arguments. After a failure,
 * normexp_last_error() describes it.
 *
 * Data layout: x is a contiguous, row-major rows x cols matrix; each row is reduced along its cols
 * entries. softmax / log_softmax write a rows x cols matrix y; y may be x itself (in place) but must
 * not otherwise overlap x. logsumexp writes rows values to out, which must not overlap x.
 * float32 is computed to within a few ULP of the float64 reference (see docs/accuracy.md for the measured
 * error); special values follow SciPy (a row with NaN gives NaN, a row of -inf gives softmax NaN and
 * logsumexp -inf, +inf gives logsumexp +inf).
 *
 * Threads: the functions are thread-safe; each call may use several OpenMP threads for large inputs
 * (see normexp_set_num_threads). Kernels are chosen once per process from the CPU (AVX-512, AVX2+FMA, NEON or
 * scalar); the environment variable NORMEXP_ISA=scalar|avx2|avx512|neon forces one.
 *
 * Example:
 *     float x[2][3] = {{1, 2, 3}, {1000, 1000, -1000}};
 *     if (normexp_softmax_f32(&x[0][0], &x[0][0], 2, 3) != NORMEXP_OK)
 *         fprintf(stderr, "%s\n", normexp_last_error());
 */
#ifndef NORMEXP_H
#define NORMEXP_H

#include <stddef.h>
#include <stdint.h>

#include "normexp/export.h"
#include "normexp/version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes. Values are stable across versions; new codes may be added at the end. */
typedef enum normexp_status {
    NORMEXP_OK = 0,
    /* A required pointer argument is NULL. */
    NORMEXP_ERROR_NULL_POINTER = 1,
    /* A size is zero, or the data it describes cannot exist: the element count or its size in bytes
     * exceeds PTRDIFF_MAX (a negative int converted to size_t lands here). */
    NORMEXP_ERROR_INVALID_SIZE = 2,
    /* The output overlaps the input other than in the one allowed way (y == x for softmax and
     * log_softmax; no overlap for logsumexp). */
    NORMEXP_ERROR_OVERLAP = 3,
    /* Any other argument out of its domain (e.g. a NaN scale, or shapes that do not fit together). */
    NORMEXP_ERROR_INVALID_ARGUMENT = 4,
    /* NORMEXP_ISA names an instruction set that is unknown or not supported by this CPU. */
    NORMEXP_ERROR_ISA = 5,
    /* Working memory could not be allocated. */
    NORMEXP_ERROR_OUT_OF_MEMORY = 6,
    /* An unexpected internal failure (a bug: please report it with normexp_last_error()). */
    NORMEXP_ERROR_INTERNAL = 7
} normexp_status;

/* ---- reductions along the rows of a row-major rows x cols matrix --------------------------------- */
NORMEXP_API int normexp_softmax_f32(const float* x, float* y, size_t rows, size_t cols);
NORMEXP_API int normexp_softmax_f64(const double* x, double* y, size_t rows, size_t cols);
NORMEXP_API int normexp_log_softmax_f32(const float* x, float* y, size_t rows, size_t cols);
NORMEXP_API int normexp_log_softmax_f64(const double* x, double* y, size_t rows, size_t cols);
/* out[r] = log(sum_c exp(x[r][c])), for r < rows. */
NORMEXP_API int normexp_logsumexp_f32(const float* x, float* out, size_t rows, size_t cols);
NORMEXP_API int normexp_logsumexp_f64(const double* x, double* out, size_t rows, size_t cols);

/* The accuracy contract (docs/accuracy.md). HIGH, what the functions above compute: x - max exact,
 * entries equal to the maximum counted, log1p of the rest (float32 softmax within about 4 ULP).
 * FAST: t = x - max rounded once in working precision, as other libraries compute it, and no
 * bookkeeping. With u = 2^-24 (float32) or 2^-53 (float64): softmax, relative error at most about
 * 2 ULP + |t| u for an entry t = x - max; log_softmax, absolute error about (8 + 2 |t| + 2 |log(sum)|) u;
 * logsumexp, absolute error about (2 + max |t|) u plus half an ULP of the result. */
typedef enum normexp_accuracy { NORMEXP_ACCURACY_HIGH = 0, NORMEXP_ACCURACY_FAST = 1 } normexp_accuracy;
/* The functions above with an accuracy (a normexp_accuracy value; any other is INVALID_ARGUMENT). */
NORMEXP_API int normexp_softmax_ex_f32(const float* x, float* y, size_t rows, size_t cols, int accuracy);
NORMEXP_API int normexp_softmax_ex_f64(const double* x, double* y, size_t rows, size_t cols, int accuracy);
NORMEXP_API int normexp_log_softmax_ex_f32(const float* x, float* y, size_t rows, size_t cols, int accuracy);
NORMEXP_API int normexp_log_softmax_ex_f64(const double* x, double* y, size_t rows, size_t cols, int accuracy);
NORMEXP_API int normexp_logsumexp_ex_f32(const float* x, float* out, size_t rows, size_t cols, int accuracy);
NORMEXP_API int normexp_logsumexp_ex_f64(const double* x, double* out, size_t rows, size_t cols, int accuracy);

/* ---- attention -----------------------------------------------------------------------------------
 * out = softmax(scale * q k^T (causal: keys j <= i only)) v for contiguous (batch, heads, len, dim)
 * tensors: q (batch, heads_q, len_q, head_dim), k (batch, heads_kv, len_kv, head_dim),
 * v (batch, heads_kv, len_kv, head_dim_v), out (batch, heads_q, len_q, head_dim_v). Grouped-query:
 * query head h reads key/value head h / (heads_q / heads_kv). scale == 0 means 1/sqrt(head_dim).
 * is_causal != 0 aligns the triangle at the top left (query i sees keys 0..i), like PyTorch.
 * NULL_POINTER for a NULL q/k/v/out, INVALID_SIZE for a zero or overflowing batch/heads/len/dim,
 * INVALID_ARGUMENT for heads_q not a multiple of heads_kv or a scale that is negative or not finite,
 * OVERLAP when out overlaps q, k or v. A query with no visible key gets an output of 0. */
NORMEXP_API int normexp_attention_f32(const float* q, const float* k, const float* v, float* out, size_t batch,
                                      size_t heads_q, size_t heads_kv, size_t len_q, size_t len_kv,
                                      size_t head_dim, size_t head_dim_v, float scale, int is_causal);

/* ---- attention with every option: one parameter struct per layout ---------------------------------
 * Fill a struct with its _init function (which sets struct_size and every default), set the fields you
 * need, and pass it. struct_size lets later versions add fields at the end: a struct from an older header
 * keeps working. Errors as everywhere in this API (status code + normexp_last_error()); out and lse are
 * untouched when a call fails its checks. */

/* Element types (dtype: q and out; kv_dtype: k and v, or the pages, 0 meaning "dtype"). normexp_attention
 * takes q, k, v all FLOAT32, all FLOAT64, all FLOAT16 or all BFLOAT16 (IEEE binary16 / bfloat16 bits, as
 * uint16_t), or a FLOAT32 q over FLOAT16 or BFLOAT16 keys and values: 16-bit operands are widened in
 * registers and computed in float32, lse and an ADDITIVE mask are then float32, and a 16-bit out is rounded
 * once. normexp_paged_attention takes the same combinations for q and the pages. */
typedef enum normexp_dtype {
    NORMEXP_FLOAT32 = 1,
    NORMEXP_FLOAT64 = 2,
    NORMEXP_FLOAT16 = 3,
    NORMEXP_BFLOAT16 = 4
} normexp_dtype;

typedef enum normexp_mask_kind {
    NORMEXP_MASK_NONE = 0,
    NORMEXP_MASK_KEEP = 1,     /* const unsigned char: non-zero keeps a score, zero masks it out */
    NORMEXP_MASK_ADDITIVE = 2  /* of the computation's type (FLOAT64, else float32): added to the score */
} normexp_mask_kind;

typedef enum normexp_causal_alignment {
    NORMEXP_CAUSAL_TOP_LEFT = 0,    /* query i sees keys j <= i (PyTorch's is_causal) */
    NORMEXP_CAUSAL_BOTTOM_RIGHT = 1 /* query i sees keys j <= i + len_kv - len_q (decoding with a KV cache) */
} normexp_causal_alignment;

/* Contiguous (batch, heads, len, dim) tensors, as normexp_attention_f32 takes them. The score of query i
 * and key j, in this order: x = scale q_i.k_j (scale 0: 1/sqrt(head_dim)); x = softcap tanh(x / softcap)
 * (softcap > 0); x -= alibi_slopes[h] |j - diag(i)|; + mask (ADDITIVE) or -inf where the mask is 0 (KEEP);
 * -inf where is_causal and j > diag(i), or window > 0 and j <= diag(i) - window. diag(i) = i (top-left) or
 * i + len_kv - len_q (bottom-right). sinks[h] adds exp(sinks[h] - M) to each row's denominator with no
 * value row (an attention sink). A row with no visible key gives 0 and lse -inf (with a sink: lse = sink).
 * Grouped-query: query head h reads key/value head h / (heads_q / heads_kv). */
typedef struct normexp_attention_params {
    size_t struct_size; /* sizeof(normexp_attention_params), set by normexp_attention_params_init */
    int dtype;          /* normexp_dtype of q, out, lse (default FLOAT32) */
    int kv_dtype;       /* normexp_dtype of k and v; 0 (default): dtype */
    const void* q;      /* (batch, heads_q, len_q, head_dim) */
    const void* k;      /* (batch, heads_kv, len_kv, head_dim) */
    const void* v;      /* (batch, heads_kv, len_kv, head_dim_v) */
    void* out;          /* (batch, heads_q, len_q, head_dim_v); must not overlap the inputs */
    void* lse;          /* NULL, or (batch, heads_q, len_q): log-sum-exp of each row's scores (sink included),
                           float64 for FLOAT64, else float32 */
    size_t batch, heads_q, heads_kv;  /* default 1 */
    size_t len_q, len_kv, head_dim, head_dim_v;
    double scale;                /* 0 (default): 1/sqrt(head_dim); else finite and > 0 */
    int is_causal;               /* default 0 */
    int causal_alignment;        /* normexp_causal_alignment, default TOP_LEFT; also places window and ALiBi */
    size_t window;               /* 0 (default): unlimited */
    double softcap;              /* 0 (default): none */
    int mask_kind;               /* normexp_mask_kind, default NONE */
    const void* mask;            /* (mask_batch, mask_heads, len_q, len_kv), contiguous */
    size_t mask_batch;           /* 1 (default, broadcast over the batch) or batch */
    size_t mask_heads;           /* 1 (default, broadcast over the heads) or heads_q */
    const double* alibi_slopes;  /* NULL, or heads_q slopes */
    const double* sinks;         /* NULL, or heads_q sink logits (finite in dtype, or -inf: no effect) */
} normexp_attention_params;

/* A paged KV cache and a batch of sequences (continuous batching): sequence s has seq_lens[s] keys; key j
 * is row j % page_size of page block_table[s * max_pages + j / page_size] of the pool
 * k_pages (num_pages, page_size, heads_kv, head_dim), v_pages (num_pages, page_size, heads_kv, head_dim_v).
 * Its new queries are rows query_start[s] .. query_start[s + 1] of q (total_queries, heads_q, head_dim);
 * out (total_queries, heads_q, head_dim_v). query_start: num_seqs + 1 non-decreasing offsets from 0 to
 * total_queries, or NULL for one query per sequence (a decode step: total_queries == num_seqs). Causal
 * alignment is bottom-right (the last query of a sequence sits at its last key). Only the first
 * ceil(seq_lens[s] / page_size) entries of a row of block_table are read; each must be in [0, num_pages).
 * Every offset, length and page index is checked before any read: a bad one is INVALID_ARGUMENT with a
 * message naming the sequence and the entry. All arrays contiguous. */
typedef struct normexp_paged_attention_params {
    size_t struct_size; /* sizeof(normexp_paged_attention_params), set by normexp_paged_attention_params_init */
    int dtype;          /* normexp_dtype of q, out, lse (default FLOAT32) */
    int kv_dtype;       /* normexp_dtype of the pages; 0 (default): dtype */
    const void* q;
    const void* k_pages;
    const void* v_pages;
    void* out;  /* must not overlap q or the pages */
    void* lse;  /* NULL, or (total_queries, heads_q): float64 for FLOAT64, else float32 */
    const int32_t* block_table; /* (num_seqs, max_pages) */
    const int32_t* seq_lens;    /* num_seqs */
    const int32_t* query_start; /* num_seqs + 1, or NULL */
    size_t num_seqs, total_queries;
    size_t heads_q, heads_kv; /* default 1 */
    size_t head_dim, head_dim_v, num_pages, page_size, max_pages;
    double scale;               /* 0 (default): 1/sqrt(head_dim) */
    int is_causal;              /* default 1 */
    size_t window;              /* 0 (default): unlimited */
    double softcap;             /* 0 (default): none */
    const double* alibi_slopes; /* NULL, or heads_q slopes */
    const double* sinks;        /* NULL, or heads_q sink logits */
} normexp_paged_attention_params;

NORMEXP_API void normexp_attention_params_init(normexp_attention_params* params);
NORMEXP_API void normexp_paged_attention_params_init(normexp_paged_attention_params* params);
/* NULL_POINTER: params, q, k, v or out NULL (mask with a mask_kind, ...); INVALID_SIZE: a zero or
 * overflowing size; OVERLAP: out or lse overlapping an input or each other; INVALID_ARGUMENT: anything
 * else (struct_size, a dtype, heads_q not a multiple of heads_kv, a scale, softcap, slope or sink out of
 * range, mask_batch / mask_heads, a bad table). */
NORMEXP_API int normexp_attention(const normexp_attention_params* params);
NORMEXP_API int normexp_paged_attention(const normexp_paged_attention_params* params);

/* ---- errors -------------------------------------------------------------------------------------- */
/* The message of the most recent status-returning normexp call on the calling thread: "" after a
 * success, a sentence naming the function and the bad argument after a failure. Thread-local; the
 * pointer stays valid until the next normexp call on this thread. Never NULL. */
NORMEXP_API const char* normexp_last_error(void);
/* A static description of a status code ("invalid size", ...); "unknown status" for other values. */
NORMEXP_API const char* normexp_status_string(int status);

/* ---- library ------------------------------------------------------------------------------------- */
/* The active kernel set: "scalar", "avx2", "avx512" or "neon". NULL if NORMEXP_ISA names an unknown or
 * unsupported set (normexp_last_error() then says which; the reductions return NORMEXP_ERROR_ISA). */
NORMEXP_API const char* normexp_isa(void);
/* Threads used by one call, process-wide. n <= 0 means as many as OpenMP allows. The count is capped
 * by omp_get_max_threads() (so OMP_NUM_THREADS holds); a build without OpenMP always uses 1. */
NORMEXP_API void normexp_set_num_threads(int n);
NORMEXP_API int normexp_get_num_threads(void);
/* The library's version ("0.1.0"): compare with NORMEXP_VERSION_STRING to detect a header/library
 * mismatch. */
NORMEXP_API const char* normexp_version(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* NORMEXP_H */

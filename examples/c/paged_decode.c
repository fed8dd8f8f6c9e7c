/* normexp from C: one decode step of a batched server on a paged KV cache (normexp_paged_attention).
 * Three sequences of 5, 9 and 1 keys live in pages of 4 keys of one pool, in any page order; each has one
 * new query (the token being generated), which attends to its own sequence's keys.
 * Without CMake: cc -std=c99 paged_decode.c $(pkg-config --cflags --libs normexp) -lm */
#include <math.h>
#include <stdio.h>

#include <normexp/normexp.h>

enum { SEQS = 3, HEADS_Q = 4, HEADS_KV = 2, DIM = 8, PAGES = 6, PAGE = 4, MAX_PAGES = 3 };

int main(void) {
    static float k_pages[PAGES][PAGE][HEADS_KV][DIM], v_pages[PAGES][PAGE][HEADS_KV][DIM];
    static float q[SEQS][HEADS_Q][DIM], out[SEQS][HEADS_Q][DIM], lse[SEQS][HEADS_Q];
    /* Sequence 0 in pages 4, 1; sequence 1 in 0, 5, 2; sequence 2 in 3. -1: unused entries, never read. */
    const int32_t block_table[SEQS][MAX_PAGES] = {{4, 1, -1}, {0, 5, 2}, {3, -1, -1}};
    const int32_t seq_lens[SEQS] = {5, 9, 1};
    const double sinks[HEADS_Q] = {0.0, 0.5, -INFINITY, 1.0}; /* learned per-head sink logits (-inf: none) */
    normexp_paged_attention_params p;
    int rc, s, h, i;

    for (i = 0; i < PAGES * PAGE * HEADS_KV * DIM; ++i) {
        (&k_pages[0][0][0][0])[i] = (float)sin(0.1 * i);
        (&v_pages[0][0][0][0])[i] = (float)cos(0.07 * i);
    }
    for (i = 0; i < SEQS * HEADS_Q * DIM; ++i) (&q[0][0][0])[i] = (float)sin(0.3 * i + 1);

    normexp_paged_attention_params_init(&p); /* defaults: float32, causal, scale 1/sqrt(head_dim) */
    p.q = q;
    p.k_pages = k_pages;
    p.v_pages = v_pages;
    p.out = out;
    p.lse = lse;
    p.block_table = &block_table[0][0];
    p.seq_lens = seq_lens;
    p.query_start = NULL; /* one new query per sequence: a decode step */
    p.num_seqs = SEQS;
    p.total_queries = SEQS;
    p.heads_q = HEADS_Q;
    p.heads_kv = HEADS_KV; /* grouped-query attention: query head h reads key/value head h / 2 */
    p.head_dim = DIM;
    p.head_dim_v = DIM;
    p.num_pages = PAGES;
    p.page_size = PAGE;
    p.max_pages = MAX_PAGES;
    p.sinks = sinks;
    rc = normexp_paged_attention(&p);
    if (rc != NORMEXP_OK) {
        fprintf(stderr, "normexp error %d (%s): %s\n", rc, normexp_status_string(rc), normexp_last_error());
        return 1;
    }
    for (s = 0; s < SEQS; ++s) {
        printf("sequence %d (%d keys): lse", s, seq_lens[s]);
        for (h = 0; h < HEADS_Q; ++h) printf(" %7.4f", lse[s][h]);
        printf("  out[head 0][0..3] %.4f %.4f %.4f %.4f\n", out[s][0][0], out[s][0][1], out[s][0][2], out[s][0][3]);
    }

    /* A table entry outside the pool is refused before anything is read, naming the sequence and entry. */
    {
        const int32_t broken[SEQS][MAX_PAGES] = {{4, 1, -1}, {0, 6, 2}, {3, -1, -1}};
        p.block_table = &broken[0][0];
        rc = normexp_paged_attention(&p);
        printf("bad page index -> %d (%s): %s\n", rc, normexp_status_string(rc), normexp_last_error());
    }
    return rc == NORMEXP_ERROR_INVALID_ARGUMENT ? 0 : 1;
}

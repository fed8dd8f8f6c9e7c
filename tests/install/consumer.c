/* C consumer of an installed normexp: header, library and version agree, and the C API works. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <normexp/normexp.h>

#define EXPECT(cond)                                                             \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "consumer_c: %s:%d: %s failed\n", __FILE__, __LINE__, #cond); \
            return 1;                                                            \
        }                                                                        \
    } while (0)

int main(void) {
    double x[2][4] = {{0, 1, 2, 3}, {-1e4, 0, 1e4, 1e4}};
    double y[2][4], lse[2];
    size_t r;
    int c;

    EXPECT(strcmp(NORMEXP_VERSION_STRING, EXPECT_VERSION) == 0);        /* header = CMake package */
    EXPECT(strcmp(normexp_version(), NORMEXP_VERSION_STRING) == 0);     /* library = header */
    EXPECT(NORMEXP_SHARED == EXPECT_SHARED);                            /* export.h = imported target */
    EXPECT(normexp_softmax_f64(&x[0][0], &y[0][0], 2, 4) == NORMEXP_OK);
    EXPECT(normexp_logsumexp_f64(&x[0][0], lse, 2, 4) == NORMEXP_OK);
    for (r = 0; r < 2; ++r) {
        double s = 0;
        for (c = 0; c < 4; ++c) s += y[r][c];
        EXPECT(fabs(s - 1) < 1e-15); /* 4 terms, each within 2 ULP: the sum is within a few 1e-16 */
    }
    EXPECT(y[1][2] == 0.5 && y[1][0] == 0);
    EXPECT(fabs(lse[1] - (1e4 + log(2.0))) < 1e-12 * 1e4); /* a few ULP of 1e4 */
    EXPECT(normexp_softmax_f32(NULL, NULL, 1, 1) == NORMEXP_ERROR_NULL_POINTER);
    EXPECT(strstr(normexp_last_error(), "normexp_softmax_f32") != NULL);
    EXPECT(normexp_isa() != NULL);
    {   /* attention through the parameter structs: contiguous with a sink, and a paged decode step */
        float q[2][4] = {{1, 0, 0, 0}, {0, 1, 0, 0}}, k[3][4] = {{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}};
        float v[3][2] = {{1, 0}, {0, 1}, {1, 1}}, out[2][2], lse_a[2], pages_k[2][2][4], pages_v[2][2][2], out_p[2][2];
        const double sink = 0.25;
        const int32_t table[1][2] = {{1, 0}}, lens[1] = {3}, starts[2] = {0, 2};
        normexp_attention_params a;
        normexp_paged_attention_params pg;
        normexp_attention_params_init(&a);
        a.q = q, a.k = k, a.v = v, a.out = out, a.lse = lse_a, a.sinks = &sink;
        a.len_q = 2, a.len_kv = 3, a.head_dim = 4, a.head_dim_v = 2;
        a.is_causal = 1, a.causal_alignment = NORMEXP_CAUSAL_BOTTOM_RIGHT;
        EXPECT(normexp_attention(&a) == NORMEXP_OK);
        EXPECT(lse_a[0] > sink && out[0][0] > 0);
        /* The same keys in pages 1 then 0 of a pool of two pages of 2 keys: the same result. */
        memcpy(pages_k[1], k[0], sizeof(float) * 8), memcpy(pages_k[0][0], k[2], sizeof(float) * 4);
        memcpy(pages_v[1], v[0], sizeof(float) * 4), memcpy(pages_v[0][0], v[2], sizeof(float) * 2);
        memset(pages_k[0][1], 0, sizeof(float) * 4), memset(pages_v[0][1], 0, sizeof(float) * 2);
        normexp_paged_attention_params_init(&pg);
        pg.q = q, pg.k_pages = pages_k, pg.v_pages = pages_v, pg.out = out_p, pg.sinks = &sink;
        pg.block_table = &table[0][0], pg.seq_lens = lens, pg.query_start = starts;
        pg.num_seqs = 1, pg.total_queries = 2, pg.head_dim = 4, pg.head_dim_v = 2;
        pg.num_pages = 2, pg.page_size = 2, pg.max_pages = 2;
        EXPECT(normexp_paged_attention(&pg) == NORMEXP_OK);
        for (r = 0; r < 2; ++r)
            for (c = 0; c < 2; ++c) EXPECT(fabs(out_p[r][c] - out[r][c]) < 1e-6);
        {
            const int32_t bad[1][2] = {{1, 2}};
            pg.block_table = &bad[0][0];
            EXPECT(normexp_paged_attention(&pg) == NORMEXP_ERROR_INVALID_ARGUMENT);
            EXPECT(strstr(normexp_last_error(), "block_table[0, 1]") != NULL);
        }
    }
    printf("consumer_c: ok (normexp %s, %s, isa %s, %d threads)\n", normexp_version(),
           NORMEXP_SHARED ? "shared" : "static", normexp_isa(), normexp_get_num_threads());
    return 0;
}

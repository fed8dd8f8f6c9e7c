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
    printf("consumer_c: ok (normexp %s, %s, isa %s, %d threads)\n", normexp_version(),
           NORMEXP_SHARED ? "shared" : "static", normexp_isa(), normexp_get_num_threads());
    return 0;
}

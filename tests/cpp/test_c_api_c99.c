/* The C header compiled as strict C99 (-std=c99 -pedantic-errors), and the C API called from C. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "normexp/normexp.h"

static int failures = 0;
#define EXPECT(cond, what)                                           \
    do {                                                             \
        if (!(cond)) {                                               \
            ++failures;                                              \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, what); \
        }                                                            \
    } while (0)

int main(void) {
    float x[2][3] = {{1.0f, 2.0f, 3.0f}, {1000.0f, 1000.0f, -1000.0f}};
    double xd[3] = {-1e300, 0.0, 1e300};
    float lse[2];
    double lsed;
    size_t r, c;
    int rc;

    rc = normexp_logsumexp_f32(&x[0][0], lse, 2, 3);
    EXPECT(rc == NORMEXP_OK, "logsumexp_f32");
    /* log(e + e^2 + e^3) = 3 + log1p(e^-1 + e^-2); log(2) + 1000. 1e-5: a few float32 ULP of 3.4 / 1000. */
    EXPECT(fabs(lse[0] - 3.40760596) < 1e-5 * 3.4, "logsumexp row 0");
    EXPECT(fabs(lse[1] - (1000.0 + 0.69314718)) < 1e-5 * 1000, "logsumexp row 1");

    rc = normexp_softmax_f32(&x[0][0], &x[0][0], 2, 3); /* in place */
    EXPECT(rc == NORMEXP_OK, "softmax_f32 in place");
    for (r = 0; r < 2; ++r) {
        float s = 0;
        for (c = 0; c < 3; ++c) s += x[r][c];
        EXPECT(fabs(s - 1.0f) < 4e-7f, "softmax row sums to 1 (within a few float32 ULP)");
    }
    EXPECT(x[1][0] == 0.5f && x[1][2] == 0.0f, "softmax of {1000, 1000, -1000}");

    rc = normexp_logsumexp_f64(xd, &lsed, 1, 3);
    EXPECT(rc == NORMEXP_OK && lsed == 1e300, "logsumexp_f64 of huge values does not overflow");

    rc = normexp_log_softmax_f64(NULL, xd, 1, 3);
    EXPECT(rc == NORMEXP_ERROR_NULL_POINTER, "NULL x is NORMEXP_ERROR_NULL_POINTER");
    EXPECT(strstr(normexp_last_error(), "normexp_log_softmax_f64") != NULL, "message names the function");
    EXPECT(strcmp(normexp_status_string(rc), "null pointer") == 0, "status string");

    EXPECT(normexp_isa() != NULL, "normexp_isa");
    normexp_set_num_threads(1);
    EXPECT(normexp_get_num_threads() == 1, "set_num_threads(1)");
    normexp_set_num_threads(0);
    EXPECT(strcmp(normexp_version(), NORMEXP_VERSION_STRING) == 0, "version");

    if (failures) {
        fprintf(stderr, "c_api_c99: %d check(s) failed\n", failures);
        return 1;
    }
    printf("c_api_c99: all checks passed (isa %s, %d threads)\n", normexp_isa(), normexp_get_num_threads());
    return 0;
}

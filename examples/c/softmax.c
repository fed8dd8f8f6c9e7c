/* normexp from C: softmax over the rows of a matrix, in place, with error handling.
 * Without CMake: cc -std=c99 softmax.c $(pkg-config --cflags --libs normexp) */
#include <stdio.h>

#include <normexp/normexp.h>

int main(void) {
    /* Scores far outside exp's range are fine: the row maximum is taken out first. */
    float scores[3][4] = {{1, 2, 3, 4}, {1000, 1001, 1002, 1003}, {-1e30f, 0, 0, -1e30f}};
    float lse[3];
    int rc, r, c;

    rc = normexp_logsumexp_f32(&scores[0][0], lse, 3, 4);
    if (rc == NORMEXP_OK) rc = normexp_softmax_f32(&scores[0][0], &scores[0][0], 3, 4); /* y == x */
    if (rc != NORMEXP_OK) {
        fprintf(stderr, "normexp error %d (%s): %s\n", rc, normexp_status_string(rc), normexp_last_error());
        return 1;
    }
    printf("normexp %s (kernels: %s)\n", normexp_version(), normexp_isa());
    for (r = 0; r < 3; ++r) {
        printf("row %d: logsumexp %9.4f  softmax", r, lse[r]);
        for (c = 0; c < 4; ++c) printf(" %.4f", scores[r][c]);
        printf("\n");
    }

    /* Errors are status codes, never crashes. */
    rc = normexp_softmax_f32(NULL, &scores[0][0], 3, 4);
    printf("NULL input -> %d (%s): %s\n", rc, normexp_status_string(rc), normexp_last_error());
    return rc == NORMEXP_ERROR_NULL_POINTER ? 0 : 1;
}

// C++ consumer of an installed normexp: every public C++ entry point links, exceptions thrown inside
// the library are caught here as normexp::error (the typeinfo crosses the shared-library boundary), and
// the C API is usable from C++ too.
#include <normexp/normexp.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <normexp/normexp.hpp>
#include <stdexcept>
#include <vector>

#define EXPECT(cond)                                                                       \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            std::fprintf(stderr, "consumer_cpp: %s:%d: %s failed\n", __FILE__, __LINE__, #cond); \
            return 1;                                                                      \
        }                                                                                  \
    } while (0)

int main() {
    EXPECT(std::strcmp(NORMEXP_VERSION_STRING, EXPECT_VERSION) == 0);
    EXPECT(std::strcmp(normexp::version(), NORMEXP_VERSION_STRING) == 0);
    EXPECT(NORMEXP_SHARED == EXPECT_SHARED);

    // Row-major forms, float and double.
    std::vector<float> x = {0, 1, 2, 3, 4, 5}, y(6), lsm(6), lse(2);
    normexp::softmax(x.data(), y.data(), 2, 3);
    normexp::log_softmax(x.data(), lsm.data(), 2, 3);
    normexp::logsumexp(x.data(), lse.data(), 2, 3);
    for (int i = 0; i < 6; ++i) EXPECT(std::fabs(std::log(y[i]) - lsm[i]) < 1e-6f);  // a few ULP of |lsm| <= 2.4
    EXPECT(std::fabs(lse[0] - 2.40760596f) < 1e-6f);
    std::vector<double> xd = {1, 2, 3, 4}, yd(4);
    normexp::softmax(xd.data(), yd.data(), 1, 4, /*temperature=*/2.0);
    EXPECT(std::fabs(yd[3] / yd[2] - std::exp(0.5)) < 1e-15);

    // Strided form: softmax down the columns of a 3 x 2 matrix (axis 0), in place.
    std::vector<double> m = {0, 10, 0, 10, 0, 10};
    normexp::softmax(m.data(), {2, 1}, m.data(), {2, 1}, {3, 2}, 0);
    for (double v : m) EXPECT(std::fabs(v - 1.0 / 3) < 1e-16);  // exactly representable inputs; 1 ULP
    // ... and logsumexp along axis 0 with a keepdims-layout output.
    std::vector<double> cols(2);
    std::vector<double> src = {0, 1, 0, 1};
    normexp::logsumexp(src.data(), {2, 1}, cols.data(), {0, 1}, {2, 2}, 0);
    EXPECT(std::fabs(cols[0] - std::log(2.0)) < 1e-15 && std::fabs(cols[1] - (1 + std::log(2.0))) < 1e-15);

    // Elementwise exp and the kernel sets.
    std::vector<float> e = {0, 1}, ee(2);
    normexp::exp(e.data(), ee.data(), 2);
    EXPECT(ee[0] == 1 && std::fabs(ee[1] - 2.7182817f) < 1e-6f);
    const auto isas = normexp::available_isas();
    EXPECT(!isas.empty() && isas.front() == "scalar");
    bool listed = false;
    for (const auto& s : isas) listed |= s == normexp::isa();
    EXPECT(listed);
    normexp::exp(e.data(), ee.data(), 2, "scalar");

    // Threads.
    normexp::set_num_threads(1);
    EXPECT(normexp::get_num_threads() == 1 && normexp_get_num_threads() == 1);
    normexp::set_num_threads(0);

    // Errors thrown in the library are caught here by their type.
    bool caught = false;
    try {
        normexp::softmax(x.data(), y.data(), 2, 3, /*temperature=*/-1.0);
    } catch (const normexp::error& err) {
        caught = std::strstr(err.what(), "temperature") != nullptr;
    }
    EXPECT(caught);
    caught = false;
    try {
        normexp::reduce<double>(normexp::reduction::softmax, xd.data(), {1}, yd.data(), {1}, {4}, 3);
    } catch (const std::invalid_argument&) {
        caught = true;
    }
    EXPECT(caught);

    // The C API from C++.
    EXPECT(normexp_softmax_f32(x.data(), x.data(), 2, 3) == NORMEXP_OK);
    EXPECT(x == y);  // in place, same kernels: bit-identical to the C++ call above
    std::printf("consumer_cpp: ok (normexp %s, %s, isa %s of %zu)\n", normexp::version(),
                NORMEXP_SHARED ? "shared" : "static", normexp::isa(), isas.size());
    return 0;
}

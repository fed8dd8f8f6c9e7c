// A language model's last step, embedded in a C++ program: turn a batch of logits into next-token
// probabilities (softmax with a temperature), score the tokens that were actually observed
// (log_softmax), and report each row's log-normalizer (logsumexp).
#include <normexp/normexp.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <vector>

int main() {
    const std::size_t batch = 4, vocab = 32000;
    std::mt19937 rng(7);
    std::normal_distribution<float> logit(0.0f, 4.0f);
    std::vector<float> logits(batch * vocab);
    for (float& v : logits) v = logit(rng);
    const std::size_t observed[batch] = {17, 4242, 31999, 0};

    std::vector<float> probs(batch * vocab), logp(batch * vocab), lse(batch);
    try {
        normexp::softmax(logits.data(), probs.data(), batch, vocab, /*temperature=*/0.7);
        normexp::log_softmax(logits.data(), logp.data(), batch, vocab);
        normexp::logsumexp(logits.data(), lse.data(), batch, vocab);
    } catch (const normexp::error& e) {  // bad arguments: a std::invalid_argument with a message
        std::fprintf(stderr, "normexp: %s\n", e.what());
        return 1;
    }

    std::printf("normexp %s, kernels: %s, threads: %d\n", normexp::version(), normexp::isa(),
                normexp::get_num_threads());
    for (std::size_t b = 0; b < batch; ++b) {
        const float* p = probs.data() + b * vocab;
        const std::size_t best = std::max_element(p, p + vocab) - p;
        const double total = std::accumulate(p, p + vocab, 0.0);
        std::printf("row %zu: argmax %5zu p=%.4f (sum %.7f)  log p(observed %5zu) = %8.4f  logsumexp = %.4f\n", b,
                    best, p[best], total, observed[b], logp[b * vocab + observed[b]], lse[b]);
        if (std::fabs(total - 1.0) > 1e-4) return 1;  // float32 probabilities over 32000 entries
    }
    return 0;
}

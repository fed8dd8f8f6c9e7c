// The attention score of one entry (kernel_table.hpp: attn_scores), the scalar specification: evaluated in
// double and rounded once to T. Used by scalar.cpp (k_softmax_step) and by NEON's softmax_step for the
// general case (softcap, ALiBi, bias or a boolean mask), which must give exactly these scores.
//
// Textual include INSIDE the includer's (anonymous) namespace, like generic/ (see generic/lanes.hpp): each
// ISA file gets its own internal copy, so no copy compiled with an ISA's flags can be shared with
// baseline code. No include guard; the includer provides <cmath>, <cstddef>, <limits>, kernel_table.hpp.
template <class T>
T attn_score(T raw, std::size_t i, std::size_t j, const attn_scores<T>& sc) {
    const auto di = static_cast<std::ptrdiff_t>(j) - static_cast<std::ptrdiff_t>(i);
    if (sc.band && (di < sc.band_lo || di > sc.band_hi)) return -std::numeric_limits<T>::infinity();
    if (sc.keep && !sc.keep[static_cast<std::ptrdiff_t>(i) * sc.keep_ld + static_cast<std::ptrdiff_t>(j)])
        return -std::numeric_limits<T>::infinity();
    double x = double(raw) * double(sc.scale);
    if (sc.softcap > 0) x = double(sc.softcap) * std::tanh(x / double(sc.softcap));
    if (sc.alibi_slope != 0) x -= double(sc.alibi_slope) * std::fabs(double(di - sc.alibi_center));
    if (sc.bias) x += double(sc.bias[static_cast<std::ptrdiff_t>(i) * sc.bias_ld + static_cast<std::ptrdiff_t>(j)]);
    return static_cast<T>(x);
}

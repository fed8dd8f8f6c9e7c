// The dispatcher fills every table it hands out from scalar's and overwrites it with the ISA's entries
// (cpp/src/dispatch.cpp), so an ISA that leaves an entry null still gets a working (scalar) kernel there.
//
// The kernel table is a run of pointer-sized members (the name, then only function pointers), so the
// test reads it as words: that is what catches a member added to kernel_table.hpp but not to the
// member lists in dispatch.cpp (it would stay null in the filled table).
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "check.hpp"
#include "dispatch.hpp"

namespace {

constexpr std::size_t kWords = sizeof(normexp::kernel_table) / sizeof(void*);
static_assert(sizeof(normexp::kernel_table) % sizeof(void*) == 0, "kernel_table holds pointers only");
static_assert(sizeof(void (*)()) == sizeof(void*), "function pointers are pointer-sized");

std::vector<std::uintptr_t> words(const normexp::kernel_table& t) {
    std::vector<std::uintptr_t> w(kWords);
    std::memcpy(w.data(), &t, sizeof t);
    return w;
}

}  // namespace

int main() {
    using normexp::kernel_table;
    const kernel_table& scalar = normexp::scalar_kernels();
    const auto sw = words(scalar);
    for (std::size_t i = 0; i < kWords; ++i) CHECK(sw[i] != 0, "scalar table word %zu is null", i);

    // An all-null ISA table gets every scalar entry, and its own name.
    kernel_table empty{};
    empty.name = "empty";
    const kernel_table a = normexp::detail::with_fallback(empty, scalar);
    CHECK(std::strcmp(a.name, "empty") == 0, "name kept: %s", a.name);
    const auto aw = words(a);
    for (std::size_t i = 1; i < kWords; ++i) CHECK(aw[i] == sw[i], "null entry (word %zu) not filled from scalar", i);

    // Every entry the ISA provides wins: scalar over an all-null fallback reproduces scalar, member by
    // member (a member missing from dispatch.cpp's lists would stay null here).
    const kernel_table b = normexp::detail::with_fallback(scalar, empty);
    const auto bw = words(b);
    for (std::size_t i = 0; i < kWords; ++i) CHECK(bw[i] == sw[i], "entry (word %zu) of the ISA not taken", i);

    // Two null entries among provided ones: exactly those come from the fallback.
    kernel_table partial = scalar;
    partial.name = "partial";
    partial.f32.col_scale = nullptr;
    partial.attn_f64.pv = nullptr;
    const kernel_table c = normexp::detail::with_fallback(partial, scalar);
    CHECK(c.f32.col_scale == scalar.f32.col_scale, "f32.col_scale filled from scalar");
    CHECK(c.attn_f64.pv == scalar.attn_f64.pv, "attn_f64.pv filled from scalar");
    const auto dw = words(normexp::detail::with_fallback(partial, empty));
    std::size_t nulls = 0;
    for (std::size_t i = 1; i < kWords; ++i) nulls += dw[i] == 0;
    CHECK(nulls == 2, "over an empty fallback exactly the 2 null entries stay null (got %zu)", nulls);

    // Every table the dispatcher hands out is complete.
    for (const auto& name : normexp::detail::available_isas()) {
        const kernel_table& t = normexp::detail::kernels_for(name);
        CHECK(std::strcmp(t.name, name.c_str()) == 0, "kernels_for(%s) has name %s", name.c_str(), t.name);
        const auto tw = words(t);
        for (std::size_t i = 0; i < kWords; ++i) CHECK(tw[i] != 0, "%s: word %zu is null", name.c_str(), i);
    }
    const auto actw = words(normexp::detail::active_kernels());
    for (std::size_t i = 0; i < kWords; ++i) CHECK(actw[i] != 0, "active table: word %zu is null", i);

    return check::finish("test_dispatch");
}

// The kernel families of the SIMD ISAs, one translation unit each, compiled with the ISA's flags:
//   <isa>/reductions.cpp   exp, row_* and col_* kernels (generic/reductions.hpp over <isa>/traits.hpp)
//   <isa>/sampling.cpp     row_collect_ge, row_sample_weights (generic/sampling.hpp)
//   <isa>/attention.cpp    the attention micro-kernels (generic/attention.hpp over <isa>/attention_traits.hpp)
// Each fills its entries of a table; the ISA's table getter (avx2.cpp: avx2_kernels(), avx512.cpp:
// avx512_kernels(), neon.cpp: neon_kernels()) assembles them. These are the only external symbols of
// those files: plain functions with unique names, called only by the getter after the CPU check, so no ISA code can stand in for
// baseline code (tests/isa/check_isa_objects.cmake checks both).
#pragma once

#include "kernel_table.hpp"

namespace normexp {

// <isa>_add_<family>(t) sets that family's entries of t.f32 and t.f64 (attention: t.attn_f32, t.attn_f64 and the
// 16-bit K/V entries t.attn_kv_f16, t.attn_kv_bf16).
#if defined(NORMEXP_HAVE_AVX2)
void avx2_add_reductions(kernel_table& t);
void avx2_add_sampling(kernel_table& t);
void avx2_add_attention(kernel_table& t);
#endif
#if defined(NORMEXP_HAVE_AVX512)
void avx512_add_reductions(kernel_table& t);
void avx512_add_sampling(kernel_table& t);
void avx512_add_attention(kernel_table& t);
#endif
#if defined(NORMEXP_HAVE_AVX512BF16)
// AVX512_BF16 (kernels/avx512bf16/): not a table of its own; these overwrite entries of the avx512 table
// where the CPU has the extension (dispatch.cpp): the bfloat16 stores (reductions: cvt.f32_to_bf16, bf16)
// and the bfloat16 x bfloat16 dot products (attention: attn_kv_bf16's *_bf16q entries).
void avx512bf16_add_reductions(kernel_table& t);
void avx512bf16_add_attention(kernel_table& t);
#endif
#if defined(NORMEXP_HAVE_AMX)
// AMX (kernels/avx512amx/): the bfloat16 x bfloat16 scores on the tile unit, written over the avx512 table's
// qk_pairs and qk_direct_pairs (after avx512bf16_add_attention, whose entries it keeps for what the tiles do
// not take) where the CPU and the OS allow AMX (dispatch.cpp).
void avx512amx_add_attention(kernel_table& t);
#endif
#if defined(NORMEXP_HAVE_NEON)
void neon_add_reductions(kernel_table& t);
void neon_add_sampling(kernel_table& t);
void neon_add_attention(kernel_table& t);
#endif

}  // namespace normexp

// The bfloat16 subnormal test of the kernels that hand bfloat16 to a unit that reads subnormals as zero
// (vdpbf16ps: avx512bf16/attention.cpp; tdpbf16ps: avx512amx/attention.cpp). Textual include INSIDE the
// including file's namespace, compiled with AVX-512 BW: no #include, no include guard.
//
// bfloat16 subnormals (exponent 0, fraction not 0) found by a running minimum over vectors of 32: three integer
// operations per vector and no mask register (in the decode's score tile, two vptestmw, kandn, kmov and an or
// per key vector took a fifth of the tile's time). t = 2 h (the sign shifted out) is 0 for a zero, 2 .. 0xFE for
// a subnormal and at least 0x100 otherwise, so t - 1 (mod 2^16) is below 0xFF exactly for the subnormals; the
// minimum starts at 0xFFFF, subnormal_keys reads its verdict.
inline __m512i min_subnormal_key(__m512i acc, __m512i v) {
    const __m512i t = _mm512_add_epi16(v, v);
    return _mm512_min_epu16(acc, _mm512_add_epi16(t, _mm512_set1_epi16(-1)));
}
inline __mmask32 subnormal_keys(__m512i acc) { return _mm512_cmplt_epu16_mask(acc, _mm512_set1_epi16(0xFF)); }

# Compiler flags, in one place for every compiler normexp builds with: GCC and Clang (Linux, macOS,
# MinGW-w64), MSVC and clang-cl (Windows). Nothing else in the build names a compiler-specific flag; it
# uses these variables:
#   NORMEXP_WARNINGS        the project's warning level: -Wall -Wextra (GCC/Clang), /W4 (MSVC, clang-cl).
#                           Warnings are not errors; CI fails a build whose log has any.
#   NORMEXP_FP_FLAGS        no contraction of a*b+c into an fma: the error-free transformations (TwoSum,
#                           TwoProduct) must not be fused. GCC/Clang: -ffp-contract=off. MSVC: /fp:precise,
#                           which does not contract since Visual Studio 2022 (2019 and earlier did: not
#                           supported). clang-cl: /fp:precise means -ffp-contract=on there, so also
#                           -ffp-contract=off through /clang:.
#   NORMEXP_AVX2_FLAGS      the avx2 translation units: AVX2, FMA, F16C. MSVC has one switch, /arch:AVX2,
#                           which implies FMA and F16C code generation (its intrinsics need no flag).
#   NORMEXP_AVX512_FLAGS    the avx512 translation units: AVX-512 F, BW, DQ, VL plus AVX2, FMA, F16C, POPCNT.
#                           MSVC: /arch:AVX512 (F, CD, BW, DQ, VL).
#   NORMEXP_AVX512BF16_FLAGS the avx512bf16 translation units: the avx512 flags plus AVX512_BF16. MSVC does not
#                           gate intrinsics by /arch, so /arch:AVX512 there.
#   NORMEXP_AMX_FLAGS       the avx512amx translation units: the avx512bf16 flags plus AMX-TILE, AMX-BF16 (GCC,
#                           Clang; unset for MSVC and clang-cl: no AMX kernels there).
#   NORMEXP_C_PEDANTIC      the C99 header test: -pedantic-errors (GCC/Clang); MSVC has no equivalent.
#   NORMEXP_LIBM            the C math library a C program links (m; none on Windows with MSVC).
#   NORMEXP_NATIVE_FLAGS    NORMEXP_NATIVE=ON: -march=native; MSVC has no equivalent (a warning, no flag).
# MSVC and clang-cl also get, for every C++ target of the project: /EHsc (standard C++ exceptions),
# /utf-8 (source and execution character sets), /permissive- (standard conformance), /Zc:__cplusplus
# (__cplusplus says 201703L instead of 199711L) and _CRT_SECURE_NO_WARNINGS (std::getenv and
# std::snprintf are used as the standard defines them; C4996 would call them unsafe).
include_guard(GLOBAL)

if(MSVC)  # cl and clang-cl (CMAKE_CXX_COMPILER_FRONTEND_VARIANT MSVC)
  set(NORMEXP_WARNINGS /W4)
  add_compile_options("$<$<COMPILE_LANGUAGE:CXX>:/EHsc;/utf-8;/permissive-;/Zc:__cplusplus>")
  add_compile_definitions(_CRT_SECURE_NO_WARNINGS)
  set(NORMEXP_C_PEDANTIC "")
  set(NORMEXP_LIBM "")
  set(NORMEXP_NATIVE_FLAGS "")
  if(NORMEXP_NATIVE)
    message(WARNING "normexp: NORMEXP_NATIVE has no MSVC equivalent of -march=native; ignored")
  endif()
  if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang")  # clang-cl: the GNU spellings through /clang:
    set(NORMEXP_FP_FLAGS /fp:precise /clang:-ffp-contract=off)
    set(NORMEXP_AVX2_FLAGS /clang:-mavx2 /clang:-mfma /clang:-mf16c)
    set(NORMEXP_AVX512_FLAGS /clang:-mavx512f /clang:-mavx512bw /clang:-mavx512dq /clang:-mavx512vl
                             /clang:-mpopcnt ${NORMEXP_AVX2_FLAGS})
    set(NORMEXP_AVX512BF16_FLAGS ${NORMEXP_AVX512_FLAGS} /clang:-mavx512bf16)
  else()
    if(MSVC_VERSION LESS 1930)
      message(WARNING "normexp: MSVC ${MSVC_VERSION} contracts a*b+c into fma under /fp:precise; "
                      "Visual Studio 2022 (MSVC 19.30) or later is required for the documented accuracy")
    endif()
    set(NORMEXP_FP_FLAGS /fp:precise)
    set(NORMEXP_AVX2_FLAGS /arch:AVX2)
    set(NORMEXP_AVX512_FLAGS /arch:AVX512)
    set(NORMEXP_AVX512BF16_FLAGS /arch:AVX512)
  endif()
else()  # GCC, Clang, AppleClang (also MinGW-w64's GCC)
  set(NORMEXP_WARNINGS -Wall -Wextra)
  set(NORMEXP_FP_FLAGS -ffp-contract=off)
  set(NORMEXP_AVX2_FLAGS -mavx2 -mfma -mf16c)
  set(NORMEXP_AVX512_FLAGS -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx2 -mfma -mf16c -mpopcnt)
  set(NORMEXP_AVX512BF16_FLAGS ${NORMEXP_AVX512_FLAGS} -mavx512bf16)
  set(NORMEXP_AMX_FLAGS ${NORMEXP_AVX512BF16_FLAGS} -mamx-tile -mamx-bf16)
  set(NORMEXP_C_PEDANTIC -pedantic-errors)
  set(NORMEXP_LIBM m)
  set(NORMEXP_NATIVE_FLAGS -march=native)
endif()

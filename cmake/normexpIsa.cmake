# Per-ISA kernel sources. Each ISA translation unit gets its own flags; nothing global.
#   x86-64:  kernels/avx2.cpp and every kernels/avx2/*.cpp with -mavx2 -mfma -mf16c (MSVC: /arch:AVX2; the
#            spellings per compiler are in cmake/normexpCompiler.cmake) (selected at run time after cpuid/xgetbv)
#            kernels/avx512.cpp and every kernels/avx512/*.cpp with the x86-64-v4 AVX-512 subset (F, BW,
#            DQ, VL) plus AVX2, FMA, F16C (MSVC: /arch:AVX512) (selected after cpuid and the OS's opmask/ZMM state in xgetbv); left
#            out, with a message, where the compiler lacks the flags or NORMEXP_AVX512=OFF
#            every kernels/avx512bf16/*.cpp with those flags plus -mavx512bf16 (vdpbf16ps, vcvtneps2bf16):
#            entries the dispatcher writes over the avx512 table's bfloat16 entries where cpuid.(7,1).EAX[5]
#            says the CPU has AVX512_BF16 (dispatch.cpp); no table of their own
#            every kernels/avx512amx/*.cpp (Linux, GCC / Clang) with those flags plus -mamx-tile -mamx-bf16:
#            the bfloat16 score entries on the tile unit, written over the avx512 table's where the CPU and
#            the OS allow AMX (dispatch.cpp)
#   aarch64: kernels/neon.cpp and every kernels/neon/*.cpp (Advanced SIMD is part of armv8-a: no extra flags)
# kernels/<isa>.cpp holds only the table getter; kernels/<isa>/ the kernel families (kernels/isa_parts.hpp),
# the algorithms of kernels/generic/ over kernels/<isa>/traits.hpp. The flags go on exactly these files, so
# a new family file in kernels/<isa>/ gets them without an edit here (and never a baseline file).
include_guard(GLOBAL)
include(CheckCXXCompilerFlag)
include(${CMAKE_CURRENT_LIST_DIR}/normexpCompiler.cmake)  # NORMEXP_AVX2_FLAGS, NORMEXP_AVX512_FLAGS, ...

option(NORMEXP_AVX512 "Build the avx512 kernel set (x86-64; chosen at run time only where supported)" ON)

function(normexp_add_isa_kernels target)
  set(_src ${PROJECT_SOURCE_DIR}/cpp/src/kernels)
  if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
    file(GLOB _avx2 CONFIGURE_DEPENDS ${_src}/avx2/*.cpp)
    list(PREPEND _avx2 ${_src}/avx2.cpp)
    target_sources(${target} PRIVATE ${_avx2})
    set_source_files_properties(${_avx2} PROPERTIES COMPILE_OPTIONS "${NORMEXP_AVX2_FLAGS}")
    target_compile_definitions(${target} PRIVATE NORMEXP_HAVE_AVX2)
    if(NORMEXP_AVX512)
      list(JOIN NORMEXP_AVX512_FLAGS " " _flags)
      check_cxx_compiler_flag("${_flags}" NORMEXP_CXX_HAS_AVX512_FLAGS)
      if(NORMEXP_CXX_HAS_AVX512_FLAGS)
        file(GLOB _avx512 CONFIGURE_DEPENDS ${_src}/avx512/*.cpp)
        list(PREPEND _avx512 ${_src}/avx512.cpp)
        target_sources(${target} PRIVATE ${_avx512})
        set_source_files_properties(${_avx512} PROPERTIES COMPILE_OPTIONS "${NORMEXP_AVX512_FLAGS}")
        target_compile_definitions(${target} PRIVATE NORMEXP_HAVE_AVX512)
        list(JOIN NORMEXP_AVX512BF16_FLAGS " " _bf16_flags)
        check_cxx_compiler_flag("${_bf16_flags}" NORMEXP_CXX_HAS_AVX512BF16_FLAGS)
        if(NORMEXP_CXX_HAS_AVX512BF16_FLAGS)
          file(GLOB _avx512bf16 CONFIGURE_DEPENDS ${_src}/avx512bf16/*.cpp)
          target_sources(${target} PRIVATE ${_avx512bf16})
          set_source_files_properties(${_avx512bf16} PROPERTIES COMPILE_OPTIONS "${NORMEXP_AVX512BF16_FLAGS}")
          target_compile_definitions(${target} PRIVATE NORMEXP_HAVE_AVX512BF16)
          if(NORMEXP_AMX_FLAGS AND CMAKE_SYSTEM_NAME STREQUAL "Linux")
            list(JOIN NORMEXP_AMX_FLAGS " " _amx_flags)
            check_cxx_compiler_flag("${_amx_flags}" NORMEXP_CXX_HAS_AMX_FLAGS)
          endif()
          if(NORMEXP_CXX_HAS_AMX_FLAGS)
            file(GLOB _avx512amx CONFIGURE_DEPENDS ${_src}/avx512amx/*.cpp)
            target_sources(${target} PRIVATE ${_avx512amx})
            set_source_files_properties(${_avx512amx} PROPERTIES COMPILE_OPTIONS "${NORMEXP_AMX_FLAGS}")
            target_compile_definitions(${target} PRIVATE NORMEXP_HAVE_AMX)
          else()
            message(STATUS "normexp: no AMX kernels (the compiler lacks -mamx-tile -mamx-bf16, or not Linux)")
          endif()
        else()
          message(STATUS "normexp: the compiler does not accept the AVX512_BF16 flags: the avx512 set without vdpbf16ps")
        endif()
      else()
        message(STATUS "normexp: the compiler does not accept ${_flags}: no avx512 kernel set")
      endif()
    endif()
  elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64|ARM64)$")
    file(GLOB _neon CONFIGURE_DEPENDS ${_src}/neon/*.cpp)
    target_sources(${target} PRIVATE ${_src}/neon.cpp ${_neon})
    target_compile_definitions(${target} PRIVATE NORMEXP_HAVE_NEON)
  endif()
endfunction()

# The machine probe of the benchmark (memory bandwidth, FMA peak), built into the Python module
# normexp._probe only, threaded through cpp/src/threading.hpp. Its FMA loops for AVX2 and AVX-512 are the
# probe's only files with ISA flags (their kernel set's, whose lane traits they use); the probe runs one only
# after the library's available_isas() lists that set.
function(normexp_add_probe_sources target)
  set(_src ${PROJECT_SOURCE_DIR}/cpp/src)
  target_sources(${target} PRIVATE ${_src}/machine_probe.cpp)
  target_include_directories(${target} PRIVATE ${_src})
  if(TARGET OpenMP::OpenMP_CXX)
    target_link_libraries(${target} PRIVATE OpenMP::OpenMP_CXX)
    target_compile_definitions(${target} PRIVATE NORMEXP_USE_OPENMP)
  endif()
  if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
    target_sources(${target} PRIVATE ${_src}/machine_probe_avx2.cpp)
    set_source_files_properties(${_src}/machine_probe_avx2.cpp PROPERTIES COMPILE_OPTIONS "${NORMEXP_AVX2_FLAGS}")
    target_compile_definitions(${target} PRIVATE NORMEXP_PROBE_HAVE_AVX2)
    if(NORMEXP_AVX512)
      list(JOIN NORMEXP_AVX512_FLAGS " " _flags)
      check_cxx_compiler_flag("${_flags}" NORMEXP_CXX_HAS_AVX512_FLAGS)
      if(NORMEXP_CXX_HAS_AVX512_FLAGS)
        target_sources(${target} PRIVATE ${_src}/machine_probe_avx512.cpp)
        set_source_files_properties(${_src}/machine_probe_avx512.cpp PROPERTIES COMPILE_OPTIONS "${NORMEXP_AVX512_FLAGS}")
        target_compile_definitions(${target} PRIVATE NORMEXP_PROBE_HAVE_AVX512)
      endif()
    endif()
  endif()
endfunction()

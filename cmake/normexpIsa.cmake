# Per-ISA kernel sources. Each ISA translation unit gets its own flags; nothing global.
#   x86-64:  kernels/avx2.cpp and kernels/avx2/attention.cpp with -mavx2 -mfma   (selected at run time after
#            cpuid/xgetbv)
#   aarch64: kernels/neon.cpp and kernels/neon/attention.cpp (Advanced SIMD is part of armv8-a: no extra flags)
include_guard(GLOBAL)

function(normexp_add_isa_kernels target)
  set(_src ${PROJECT_SOURCE_DIR}/cpp/src/kernels)
  if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
    target_sources(${target} PRIVATE ${_src}/avx2.cpp ${_src}/avx2/attention.cpp)
    set_source_files_properties(${_src}/avx2.cpp ${_src}/avx2/attention.cpp PROPERTIES COMPILE_OPTIONS "-mavx2;-mfma")
    target_compile_definitions(${target} PRIVATE NORMEXP_HAVE_AVX2)
  elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64|ARM64)$")
    target_sources(${target} PRIVATE ${_src}/neon.cpp ${_src}/neon/attention.cpp)
    target_compile_definitions(${target} PRIVATE NORMEXP_HAVE_NEON)
  endif()
endfunction()

# The machine probe of the benchmark (memory bandwidth, FMA peak), linked into the Python module only.
# Its FMA loop for AVX2 is the one probe file with ISA flags; the probe runs it only after the library's
# available_isas() lists avx2.
function(normexp_add_probe_sources target)
  set(_src ${PROJECT_SOURCE_DIR}/cpp/src)
  target_sources(${target} PRIVATE ${_src}/machine_probe.cpp)
  target_include_directories(${target} PRIVATE ${_src})
  if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
    target_sources(${target} PRIVATE ${_src}/machine_probe_avx2.cpp)
    set_source_files_properties(${_src}/machine_probe_avx2.cpp PROPERTIES COMPILE_OPTIONS "-mavx2;-mfma")
    target_compile_definitions(${target} PRIVATE NORMEXP_PROBE_HAVE_AVX2)
  endif()
endfunction()

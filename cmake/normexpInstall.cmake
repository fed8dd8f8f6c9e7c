# Embedding support for the normexp library target (included from CMakeLists.txt once the target and
# its OpenMP link exist):
#   * the generated header normexp/export.h (NORMEXP_API, NORMEXP_SHARED);
#   * symbol visibility: compiled with -fvisibility=hidden, only NORMEXP_API declarations are exported,
#     and a version script (cmake/normexp.map) keeps std:: template instantiations out of the shared
#     library's dynamic symbol table;
#   * install rules (if NORMEXP_INSTALL): headers, the library (static by default, shared with
#     -DBUILD_SHARED_LIBS=ON), the CMake package normexpConfig.cmake + normexpConfigVersion.cmake +
#     exported targets normexp::normexp, and a pkg-config file normexp.pc.
# Not installed by default when built by scikit-build-core (the wheel holds the Python module only) or
# through add_subdirectory (the parent project decides; the alias normexp::normexp works there too).
include_guard(GLOBAL)
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

option(NORMEXP_INSTALL "Install the headers, library, CMake package and pkg-config file" ${_normexp_top})

get_target_property(_normexp_type normexp TYPE)
if(_normexp_type STREQUAL "SHARED_LIBRARY")
  set(NORMEXP_SHARED 1)
else()
  set(NORMEXP_SHARED 0)
endif()
if(NORMEXP_OPENMP AND OpenMP_CXX_FOUND)
  set(NORMEXP_OPENMP_LINKED 1)
else()
  set(NORMEXP_OPENMP_LINKED 0)
endif()

# ---- export header and symbol visibility ---------------------------------------------------------------
configure_file(${PROJECT_SOURCE_DIR}/cpp/include/normexp/export.h.in
               ${PROJECT_BINARY_DIR}/include/normexp/export.h @ONLY)
target_compile_definitions(normexp PRIVATE NORMEXP_BUILDING)
# While the major version is 0 every minor release may change the ABI: the soname carries both.
if(PROJECT_VERSION_MAJOR EQUAL 0)
  set(_normexp_soversion ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR})
else()
  set(_normexp_soversion ${PROJECT_VERSION_MAJOR})
endif()
set_target_properties(normexp PROPERTIES
  CXX_VISIBILITY_PRESET hidden
  VISIBILITY_INLINES_HIDDEN ON
  VERSION ${PROJECT_VERSION}
  SOVERSION ${_normexp_soversion})
if(NORMEXP_SHARED)
  include(CheckLinkerFlag)
  set(_normexp_map ${PROJECT_SOURCE_DIR}/cmake/normexp.map)
  check_linker_flag(CXX "LINKER:--version-script=${_normexp_map}" NORMEXP_LINKER_HAS_VERSION_SCRIPT)
  if(NORMEXP_LINKER_HAS_VERSION_SCRIPT)
    target_link_options(normexp PRIVATE "LINKER:--version-script=${_normexp_map}")
    set_property(TARGET normexp APPEND PROPERTY LINK_DEPENDS ${_normexp_map})
  endif()
  # Every dependency (libgomp, libstdc++) must be recorded in the shared library itself.
  check_linker_flag(CXX "LINKER:--no-undefined" NORMEXP_LINKER_HAS_NO_UNDEFINED)
  if(NORMEXP_LINKER_HAS_NO_UNDEFINED)
    target_link_options(normexp PRIVATE "LINKER:--no-undefined")
  endif()
endif()

if(NOT NORMEXP_INSTALL)
  return()
endif()

# ---- install: headers, library, CMake package -----------------------------------------------------------
set(_normexp_cmakedir ${CMAKE_INSTALL_LIBDIR}/cmake/normexp)
install(TARGETS normexp EXPORT normexpTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/cpp/include/normexp
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  FILES_MATCHING PATTERN "*.h" PATTERN "*.hpp")
install(FILES ${PROJECT_BINARY_DIR}/include/normexp/version.h ${PROJECT_BINARY_DIR}/include/normexp/export.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/normexp)
install(EXPORT normexpTargets NAMESPACE normexp:: FILE normexpTargets.cmake DESTINATION ${_normexp_cmakedir})

configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/normexpConfig.cmake.in
  ${PROJECT_BINARY_DIR}/normexpConfig.cmake INSTALL_DESTINATION ${_normexp_cmakedir})
# 0.x: a minor release may break the API, so find_package(normexp 0.1) accepts 0.1.* only.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/normexpConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/normexpConfig.cmake ${PROJECT_BINARY_DIR}/normexpConfigVersion.cmake
  DESTINATION ${_normexp_cmakedir})

# ---- pkg-config -------------------------------------------------------------------------------------------
# Relocatable: the prefix is found from the .pc file's own directory. A static libnormexp needs the
# C++ runtime and OpenMP on the link line of whoever links it (also from C); they go into Libs, since a
# static-only installation has nothing else to carry them.
file(RELATIVE_PATH NORMEXP_PC_PREFIX_REL "/prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/prefix")
set(_normexp_runtime "")
if(NORMEXP_OPENMP_LINKED)
  string(APPEND _normexp_runtime " ${OpenMP_CXX_FLAGS}")
endif()
foreach(_lib IN LISTS CMAKE_CXX_IMPLICIT_LINK_LIBRARIES)
  if(_lib MATCHES "^(stdc\\+\\+|c\\+\\+|c\\+\\+abi|m)$")
    string(APPEND _normexp_runtime " -l${_lib}")
  endif()
endforeach()
if(NORMEXP_SHARED)
  set(NORMEXP_PC_LIBS "")
else()
  set(NORMEXP_PC_LIBS "${_normexp_runtime}")
endif()
configure_file(${PROJECT_SOURCE_DIR}/cmake/normexp.pc.in ${PROJECT_BINARY_DIR}/normexp.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/normexp.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# Finds what the crossbatch headers need; shared by the build and by find_package(crossbatch).
include(CMakeFindDependencyMacro)
find_dependency(Eigen3 3.4 NO_MODULE)
find_dependency(nlohmann_json 3.10)
# OpenMP threads the CPU matrix products (context<cpu>::threads).
find_dependency(OpenMP COMPONENTS CXX)
# PCRE2 (Unicode-aware regular expressions for tokenizer pre-splitting) ships no CMake config on
# Debian; it does ship pkg-config files.
if(NOT TARGET PCRE2::8)
  find_package(PkgConfig QUIET)
  if(PkgConfig_FOUND)
    pkg_check_modules(CROSSBATCH_PCRE2 QUIET IMPORTED_TARGET libpcre2-8)
  endif()
  if(TARGET PkgConfig::CROSSBATCH_PCRE2)
    add_library(PCRE2::8 INTERFACE IMPORTED)
    target_link_libraries(PCRE2::8 INTERFACE PkgConfig::CROSSBATCH_PCRE2)
  else()
    find_path(CROSSBATCH_PCRE2_INCLUDE pcre2.h)
    find_library(CROSSBATCH_PCRE2_LIB pcre2-8)
    if(NOT CROSSBATCH_PCRE2_INCLUDE OR NOT CROSSBATCH_PCRE2_LIB)
      message(FATAL_ERROR "crossbatch needs PCRE2 (Debian: libpcre2-dev)")
    endif()
    add_library(PCRE2::8 UNKNOWN IMPORTED)
    set_target_properties(PCRE2::8 PROPERTIES IMPORTED_LOCATION ${CROSSBATCH_PCRE2_LIB}
      INTERFACE_INCLUDE_DIRECTORIES ${CROSSBATCH_PCRE2_INCLUDE})
  endif()
endif()

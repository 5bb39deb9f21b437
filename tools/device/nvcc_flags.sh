# The nvcc flags of the gpu tests built outside CMake (the device image's Boost has no compiled
# unit_test_framework, so the tests use the header-only one): those CMake uses for cuda_test_*.
# Sourced from the repository root.
nvcc_flags=(-std=c++20 -O3 -DNDEBUG --expt-relaxed-constexpr -diag-suppress 20012
  -gencode=arch=compute_90a,code=sm_90a -Iinclude -Itests -I/usr/include/eigen3
  -DCROSSBATCH_BOOST_TEST_INCLUDED "-DCROSSBATCH_TEST_DATA=\"$PWD/tests/data\"" "-DCROSSBATCH_SOURCE_DIR=\"$PWD\"")

// CROSSBATCH_HD marks functions that CUDA kernels call too (__host__ __device__ under nvcc).
#pragma once

#if defined(__CUDACC__)
#define CROSSBATCH_HD __host__ __device__
#else
#define CROSSBATCH_HD
#endif

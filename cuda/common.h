// Shared by every kernel file and by the host-compiled test harness (tests/cuda_host.cpp): plain C++, no torch.
#pragma once

#include <stdint.h>

#if defined(__CUDACC__)
#define T3D_HD __host__ __device__ __forceinline__
#define T3D_UNROLL _Pragma("unroll")
#else
#define T3D_HD inline
#define T3D_UNROLL
#endif

#include <math.h>

// Status codes returned across the C ABI (0 = launched; >0 = a cudaError_t from the launch).
#define T3D_OK 0
#define T3D_BAD_ARGUMENT -1

// The whole public API of petal in one include.
#pragma once
#include <petal/atomic_file.h>
#include <petal/autocast.h>
#include <petal/autograd.h>
#include <petal/device.h>
#include <petal/distributed.h>
#include <petal/dtype.h>
#include <petal/error.h>
#include <petal/ops.h>
#include <petal/random.h>
#include <petal/tensor.h>
#include <petal/threads.h>
#include <petal/warning.h>
#if __has_include(<petal/nn.h>)
#include <petal/nn.h>
#endif
#if __has_include(<petal/optim.h>)
#include <petal/optim.h>
#endif
#if __has_include(<petal/data.h>)
#include <petal/data.h>
#endif
#if __has_include(<petal/serialize.h>)
#include <petal/serialize.h>
#endif

// petal::data: image decode/encode, torchvision-style transforms, ImageFolder datasets,
// a multi-threaded DataLoader and the synthetic flower generator, in one include.
#pragma once
#include <petal/data/dataset.h>
#include <petal/data/image.h>
#include <petal/data/loader.h>
#include <petal/data/rng.h>
#include <petal/data/sampler.h>
#include <petal/data/synthetic.h>
#include <petal/data/transforms.h>

// petal::nn: modules, layers, the ViT, losses and initializers in one include.
#pragma once
#include <petal/nn/ddp.h>
#include <petal/nn/functional.h>
#include <petal/nn/init.h>
#include <petal/nn/layers.h>
#include <petal/nn/loss.h>
#include <petal/nn/module.h>
#include <petal/nn/save.h>
#include <petal/nn/transformer.h>
#include <petal/nn/vit.h>
#if __has_include(<petal/nn/pretrained.h>)
#include <petal/nn/pretrained.h>
#endif
#if __has_include(<petal/nn/checkpoint.h>)
#include <petal/nn/checkpoint.h>
#endif

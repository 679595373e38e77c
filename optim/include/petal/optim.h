// petal::optim: optimizers, learning-rate schedules and gradient clipping in one include.
#pragma once
#include <petal/optim/adamw.h>
#include <petal/optim/clip_grad.h>
#include <petal/optim/grad_scaler.h>
#include <petal/optim/optimizer.h>
#include <petal/optim/schedule.h>
#include <petal/optim/sgd.h>

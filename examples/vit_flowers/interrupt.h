// Ctrl-C during training: the first SIGINT asks the trainer to stop after the current step
// (it writes checkpoint-last, prints how to resume, and the program exits 130); a second
// SIGINT ends the process at once (the default action, re-raised).
#pragma once

namespace vit_flowers {

/// Installs the SIGINT handler (idempotent). The library's train() works without it.
void install_interrupt_handler();
/// Whether a first SIGINT arrived since the handler was installed (or since clear).
bool interrupt_requested();
/// Forgets a request (tests; a program that trains twice).
void clear_interrupt();

/// The exit status of a run stopped by SIGINT (128 + SIGINT, as a shell reports it).
constexpr int kInterruptedExitCode = 130;

}  // namespace vit_flowers

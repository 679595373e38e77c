// SIGINT handling (see interrupt.h): the handler only sets a lock-free flag or, the second
// time, restores the default action and re-raises.
#include "interrupt.h"

#include <atomic>
#include <csignal>
#include <cstring>
#include <unistd.h>

namespace vit_flowers {

namespace {

std::atomic<int> g_interrupts{0};
static_assert(std::atomic<int>::is_always_lock_free, "the signal handler needs a lock-free flag");

extern "C" void on_sigint(int sig) {
  if (g_interrupts.fetch_add(1) == 0) {
    static const char msg[] = "\ninterrupt: finishing the current step (Ctrl-C again to abort)\n";
    [[maybe_unused]] const ssize_t n = ::write(STDERR_FILENO, msg, sizeof(msg) - 1);
    return;
  }
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

}  // namespace

void install_interrupt_handler() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  ::sigaction(SIGINT, &sa, nullptr);
}

bool interrupt_requested() { return g_interrupts.load() > 0; }

void clear_interrupt() { g_interrupts.store(0); }

}  // namespace vit_flowers

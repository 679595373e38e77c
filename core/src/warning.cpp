// Warnings to stderr or to an installed handler.
#include <petal/warning.h>

#include <cstdio>
#include <mutex>
#include <set>

namespace petal {

namespace {
std::mutex g_warning_mutex;
WarningHandler g_warning_handler;
std::set<std::string> g_warned_keys;
}  // namespace

void warn(const std::string& message) {
  WarningHandler h;
  {
    std::lock_guard<std::mutex> lock(g_warning_mutex);
    h = g_warning_handler;
  }
  if (h) {
    h(message);
  } else {
    std::fprintf(stderr, "petal warning: %s\n", message.c_str());
    std::fflush(stderr);
  }
}

void warn_once(const std::string& key, const std::string& message) {
  {
    std::lock_guard<std::mutex> lock(g_warning_mutex);
    if (!g_warned_keys.insert(key).second) return;
  }
  warn(message);
}

void reset_warn_once() {
  std::lock_guard<std::mutex> lock(g_warning_mutex);
  g_warned_keys.clear();
}

WarningHandler set_warning_handler(WarningHandler handler) {
  std::lock_guard<std::mutex> lock(g_warning_mutex);
  WarningHandler prev = std::move(g_warning_handler);
  g_warning_handler = std::move(handler);
  return prev;
}

}  // namespace petal

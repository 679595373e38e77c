// tqdm-shaped progress lines (see progress.h).
#include "progress.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <unistd.h>

namespace vit_flowers {

namespace {
double progress_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

std::string format_interval(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<int64_t>(seconds);
  char buf[48];
  if (s >= 3600)
    std::snprintf(buf, sizeof(buf), "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  else
    std::snprintf(buf, sizeof(buf), "%02lld:%02lld", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  return buf;
}

std::string format_progress(const std::string& tag, int64_t step, int64_t total, double elapsed, int64_t images,
                            double loss, double acc) {
  const int width = static_cast<int>(std::to_string(total).size());
  char buf[256];
  std::string line = tag;
  std::snprintf(buf, sizeof(buf), "  %*lld/%lld [", width, static_cast<long long>(step), static_cast<long long>(total));
  line += buf;
  const double rate = elapsed > 0 && step > 0 ? static_cast<double>(step) / elapsed : 0.0;
  const double remaining = rate > 0 ? static_cast<double>(total - step) / rate : -1.0;
  line += format_interval(elapsed) + "<" + format_interval(remaining) + ", ";
  if (rate <= 0)
    line += "? it/s";
  else if (rate >= 1.0) {
    std::snprintf(buf, sizeof(buf), "%.1f it/s", rate);
    line += buf;
  } else {
    std::snprintf(buf, sizeof(buf), "%.2f s/it", 1.0 / rate);  // tqdm inverts slow rates
    line += buf;
  }
  if (elapsed > 0) {
    std::snprintf(buf, sizeof(buf), ", %.0f img/s", static_cast<double>(images) / elapsed);
    line += buf;
  }
  line += "]";
  if (loss >= 0 && acc >= 0) {
    std::snprintf(buf, sizeof(buf), " loss %.3f acc %.3f", loss, acc);
    line += buf;
  }
  return line;
}

bool is_terminal(const std::ostream& log) { return &log == &std::cout && ::isatty(STDOUT_FILENO); }

Progress::Progress(std::ostream& log, bool enabled, bool tty, std::string tag, int64_t total)
    : log_(log), enabled_(enabled), tty_(tty), tag_(std::move(tag)), total_(total), start_(progress_now()) {}

void Progress::update(int64_t step, int64_t images, double loss, double acc, bool metrics_fresh) {
  if (!enabled_) return;
  const std::string line = format_progress(tag_, step, total_, progress_now() - start_, images, loss, acc);
  if (tty_) {
    log_ << "\r" << line << "\033[K" << std::flush;  // clear what a longer previous line left
    open_ = true;
    if (step == total_) finish();
    return;
  }
  if (metrics_fresh) log_ << line << "\n" << std::flush;  // plain lines only when the trainer read the metrics
}

void Progress::finish() {
  if (open_) log_ << "\n" << std::flush;
  open_ = false;
}

}  // namespace vit_flowers

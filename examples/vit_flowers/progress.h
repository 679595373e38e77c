// Progress of a pass over a loader, in tqdm's shape:
//   [train epoch 3]  45/58 [00:12<00:03, 3.7 it/s, 118 img/s] loss 0.812 acc 0.702
// redrawn in place ('\r') on a terminal, as plain lines about every tenth of the pass
// otherwise (logs, pipes). The loss and accuracy shown are the last values the trainer read
// from the device (every --log-every steps), so drawing the bar never waits for the device.
#pragma once
#include <cstdint>
#include <iosfwd>
#include <string>

namespace vit_flowers {

/// "00:12", "1:02:03" (tqdm's format_interval).
std::string format_interval(double seconds);

/// One progress line (no '\r', no newline). elapsed in seconds; images seen so far;
/// loss/acc < 0 (nothing read yet) are left out.
std::string format_progress(const std::string& tag, int64_t step, int64_t total, double elapsed, int64_t images,
                            double loss, double acc);

class Progress {
 public:
  /// tty: redraw in place at every step; otherwise a line at each step whose metrics were
  /// just read (metrics_fresh; the trainer reads them about every tenth of a pass off a
  /// terminal). enabled=false prints nothing.
  Progress(std::ostream& log, bool enabled, bool tty, std::string tag, int64_t total);
  /// After step `step` (1-based) of `total`, with the images seen and the last-read metrics.
  void update(int64_t step, int64_t images, double loss, double acc, bool metrics_fresh);
  /// Ends the in-place line on a terminal.
  void finish();

 private:
  std::ostream& log_;
  bool enabled_, tty_, open_ = false;
  std::string tag_;
  int64_t total_;
  double start_;
};

/// Whether the stream is std::cout and stdout is a terminal.
bool is_terminal(const std::ostream& log);

}  // namespace vit_flowers

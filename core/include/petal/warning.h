// Warnings: problems that are not errors (PyTorch's UserWarning). They go to stderr as
// "petal warning: ..." unless a handler is installed (tests capture them that way).
#pragma once
#include <functional>
#include <string>

namespace petal {

using WarningHandler = std::function<void(const std::string& message)>;

/// Issues a warning through the current handler (stderr by default). Thread-safe.
void warn(const std::string& message);
/// warn(message) the first time this process passes key (later calls are silent).
void warn_once(const std::string& key, const std::string& message);
/// Forgets which keys warn_once has seen (for tests).
void reset_warn_once();
/// Installs handler (an empty one restores stderr); returns the previous handler.
WarningHandler set_warning_handler(WarningHandler handler);

}  // namespace petal

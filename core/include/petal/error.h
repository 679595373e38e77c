// petal::Error: the single exception type of the framework. Messages name the op and
// the offending shapes/dtypes/devices so a user can tell what went wrong and where.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace petal {

/// Exception thrown for every user-facing error (bad shapes, dtypes, devices, files).
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

namespace detail {
template <typename... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

}  // namespace petal

/// Throws petal::Error with the streamed arguments when cond is false.
#define PETAL_CHECK(cond, ...)                                             \
  do {                                                                     \
    if (!(cond)) throw ::petal::Error(::petal::detail::str_cat(__VA_ARGS__)); \
  } while (0)

/// Throws petal::Error unconditionally.
#define PETAL_FAIL(...) throw ::petal::Error(::petal::detail::str_cat(__VA_ARGS__))

// PyTorch-style printing: nested brackets, a shared number format chosen from the
// values (integers without decimals, scientific when the range is wide), and a suffix
// naming dtype/device/grad_fn when they are not the defaults.
#include <petal/autograd.h>
#include <petal/tensor.h>

#include <cmath>
#include <cstdio>
#include <sstream>

namespace petal {

namespace {

struct Format {
  bool integral = true;
  bool sci = false;
  int precision = 4;
};

std::string fmt_value(double v, const Format& f, bool is_bool) {
  char buf[64];
  if (is_bool) return v != 0 ? "True" : "False";
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (f.integral) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
    return buf;
  }
  if (f.sci) {
    std::snprintf(buf, sizeof buf, "%.*e", f.precision, v);
  } else {
    std::snprintf(buf, sizeof buf, "%.*f", f.precision, v);
  }
  return buf;
}

void print_rec(std::ostream& os, const double* data, const Shape& shape, size_t d, int64_t& idx, const Format& f,
               bool is_bool, int indent, size_t width) {
  if (d == shape.size()) {
    std::string s = fmt_value(data[idx++], f, is_bool);
    os << std::string(width > s.size() ? width - s.size() : 0, ' ') << s;
    return;
  }
  os << "[";
  int64_t n = shape[d];
  const int64_t edge = 3;
  bool summarize = false;
  int64_t total = 1;
  for (auto s : shape) total *= s;
  if (total > 1000 && n > 2 * edge) summarize = true;
  int64_t inner = 1;
  for (size_t k = d + 1; k < shape.size(); ++k) inner *= shape[k];
  for (int64_t i = 0; i < n; ++i) {
    if (summarize && i == edge) {
      os << (d + 1 == shape.size() ? "..., " : "...,\n" + std::string(indent + 1, ' '));
      idx += (n - 2 * edge) * inner;
      i = n - edge - 1;
      continue;
    }
    print_rec(os, data, shape, d + 1, idx, f, is_bool, indent + 1, width);
    if (i + 1 < n) {
      if (d + 1 == shape.size()) {
        os << ", ";
      } else {
        os << "," << std::string(shape.size() - d - 1, '\n') << std::string(indent + 1, ' ');
      }
    }
  }
  os << "]";
}

}  // namespace

std::string Tensor::to_string() const {
  if (!defined()) return "tensor(undefined)";
  Tensor c = detach().to(kCPU, DType::f64).contiguous();
  const double* p = c.data<double>();
  int64_t n = c.numel();
  Format f;
  double amax = 0, amin = INFINITY;
  for (int64_t i = 0; i < n; ++i) {
    double v = p[i];
    if (!std::isfinite(v)) continue;
    if (v != std::floor(v)) f.integral = false;
    amax = std::max(amax, std::fabs(v));
    if (v != 0) amin = std::min(amin, std::fabs(v));
  }
  if (is_floating(dtype()) && !f.integral) {
    if (amax >= 1e8 || (amin < 1e-4 && amin > 0) || (amin != INFINITY && amax / amin > 1000)) f.sci = true;
  }
  bool is_bool = dtype() == DType::b8;
  std::ostringstream os;
  os << "tensor(";
  // Width: longest formatted value.
  size_t width = 0;
  for (int64_t i = 0; i < n; ++i) width = std::max(width, fmt_value(p[i], f, is_bool).size());
  if (is_floating(dtype()) && f.integral) {
    // PyTorch prints integral floats with a trailing dot.
    std::ostringstream body;
    int64_t idx = 0;
    Format g = f;
    if (dim() == 0) {
      body << fmt_value(p[0], g, false) << ".";
    } else {
      // re-render with a trailing '.' on each value
      std::ostringstream tmp;
      print_rec(tmp, p, shape(), 0, idx, g, false, 7, width);
      std::string s = tmp.str(), r;
      for (size_t i = 0; i < s.size(); ++i) {
        r += s[i];
        bool digit = std::isdigit(static_cast<unsigned char>(s[i]));
        bool next_digit = i + 1 < s.size() && (std::isdigit(static_cast<unsigned char>(s[i + 1])));
        if (digit && !next_digit) r += '.';
      }
      body << r;
    }
    os << body.str();
  } else if (dim() == 0) {
    os << fmt_value(p[0], f, is_bool);
  } else {
    int64_t idx = 0;
    print_rec(os, p, shape(), 0, idx, f, is_bool, 7, width);
  }
  if (numel() == 0) os << ", size=" << shape_str(shape());
  bool default_dtype = dtype() == DType::f32 || dtype() == DType::i64 || dtype() == DType::b8;
  if (!default_dtype) os << ", dtype=" << dtype_name(dtype());
  if (!device().is_cpu()) os << ", device='" << device().str() << "'";
  if (impl()->grad_fn) {
    os << ", grad_fn=<" << impl()->grad_fn->name() << "Backward>";
  } else if (requires_grad()) {
    os << ", requires_grad=True";
  }
  os << ")";
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.to_string(); }

}  // namespace petal

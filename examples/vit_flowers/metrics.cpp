// metrics.csv (see metrics.h).
#include "metrics.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace vit_flowers {

namespace {

const char* kMetricsHeader = "epoch,lr,train_loss,train_acc,val_loss,val_acc,seconds,images_per_s";

std::string cell(double v, const char* format) {
  if (!std::isfinite(v)) return "";
  char buf[64];
  std::snprintf(buf, sizeof(buf), format, v);
  return buf;
}

double parse_cell(const std::string& text, const std::string& path, int line, const char* column) {
  if (text.empty()) return NAN;
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  PETAL_CHECK(end == text.c_str() + text.size() && errno != ERANGE, "vit_flowers: '", path, "' line ", line, ": ",
              column, " = '", text, "' is not a number");
  return v;
}

}  // namespace

std::string metrics_csv(const std::vector<EpochStats>& rows) {
  std::string out = std::string(kMetricsHeader) + "\n";
  for (const EpochStats& r : rows) {
    out += std::to_string(r.epoch + 1) + "," + cell(r.lr, "%.6g") + "," + cell(r.train_loss, "%.6f") + "," +
           cell(r.train_acc, "%.6f") + "," + cell(r.val_loss, "%.6f") + "," + cell(r.val_acc, "%.6f") + "," +
           cell(r.seconds, "%.3f") + "," + cell(r.images_per_s, "%.1f") + "\n";
  }
  return out;
}

void write_metrics_csv(const std::string& path, const std::vector<EpochStats>& rows) {
  petal::write_file_atomic(path, metrics_csv(rows));
}

std::vector<EpochStats> read_metrics_csv(const std::string& path) {
  std::vector<EpochStats> rows;
  if (!std::filesystem::exists(path)) return rows;
  std::ifstream in(path);
  PETAL_CHECK(in.good(), "vit_flowers: cannot open '", path, "'");
  std::string text;
  int line_no = 0;
  static const char* columns[] = {"epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds", "images_per_s"};
  while (std::getline(in, text)) {
    ++line_no;
    if (line_no == 1) {
      PETAL_CHECK(text == kMetricsHeader, "vit_flowers: '", path, "' line 1 is not the metrics header '", kMetricsHeader,
                  "'");
      continue;
    }
    if (text.empty()) continue;
    std::vector<std::string> cells;
    std::stringstream ss(text);
    std::string c;
    while (std::getline(ss, c, ',')) cells.push_back(c);
    if (!text.empty() && text.back() == ',') cells.push_back("");
    PETAL_CHECK(cells.size() == 8, "vit_flowers: '", path, "' line ", line_no, " has ", cells.size(),
                " columns, expected 8");
    double v[8];
    for (int i = 0; i < 8; ++i) v[i] = parse_cell(cells[static_cast<size_t>(i)], path, line_no, columns[i]);
    PETAL_CHECK(std::isfinite(v[0]) && v[0] >= 1 && v[0] == std::floor(v[0]), "vit_flowers: '", path, "' line ", line_no,
                ": epoch '", cells[0], "' is not an epoch number");
    EpochStats r;
    r.epoch = static_cast<int64_t>(v[0]) - 1;
    r.lr = v[1];
    r.train_loss = v[2];
    r.train_acc = v[3];
    r.val_loss = v[4];
    r.val_acc = v[5];
    r.seconds = v[6];
    r.images_per_s = v[7];
    rows.push_back(r);
  }
  return rows;
}

}  // namespace vit_flowers

// save(module, path) / load(module, path): round trips on every device, the file is plain
// safetensors, writes are atomic, and bad files are errors naming the file and the tensor
// with the module left unchanged.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "testing.h"

using namespace petal;
using petal::testing::check_close;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path dir;
  TempDir() {
    static int counter = 0;
    dir = fs::temp_directory_path() / ("petal_nn_save_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(dir);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  std::string operator/(const std::string& name) const { return (dir / name).string(); }
};

class TwoLayer : public nn::Module {
 public:
  explicit TwoLayer(int64_t hidden = 5) : Module("TwoLayer") {
    fc1 = register_module("fc1", std::make_shared<nn::Linear>(3, hidden));
    fc2 = register_module("fc2", std::make_shared<nn::Linear>(hidden, 2));
    norm = register_module("norm", std::make_shared<nn::LayerNorm>(hidden));
    scale = register_buffer("scale", full({2}, 1.0));
  }
  Tensor forward(const Tensor& x) override { return mul(fc2->forward(relu(norm->forward(fc1->forward(x)))), scale); }
  std::shared_ptr<nn::Linear> fc1, fc2;
  std::shared_ptr<nn::LayerNorm> norm;
  Tensor scale;
};

}  // namespace

TEST_CASE("save and load a module in one call", "[nn][save]") {
  auto dev = GENERATE(from_range(petal::testing::test_devices()));
  const Device d(dev);
  TempDir tmp;
  const std::string path = tmp / "model.safetensors";
  manual_seed(1);
  auto a = std::make_shared<TwoLayer>();
  a->to(d);
  {
    NoGradGuard ng;
    a->scale.fill_(0.75);
  }
  save(a, path);
  CHECK(fs::exists(path));
  CHECK_FALSE(fs::exists(atomic_temp_path(path)));
  // the file is plain safetensors with the state_dict's names
  SafetensorsContents c = load_safetensors_contents(path);
  CHECK(c.tensors.size() == a->state_dict().size());
  CHECK(c.tensors.count("fc1.weight") == 1);
  CHECK(c.tensors.count("scale") == 1);
  CHECK(c.metadata.at("petal.module") == "TwoLayer");

  manual_seed(2);  // different initial weights
  auto b = std::make_shared<TwoLayer>();
  b->to(d);
  Tensor handle = b->fc1->weight;  // handles stay valid through load
  load(b, path);
  CHECK(handle.is_same(b->fc1->weight));
  CHECK(b->fc1->weight.device() == d);
  for (const auto& [name, t] : a->state_dict()) {
    INFO(name);
    check_close(b->state_dict().at(name), t.to(kCPU, DType::f64), 0.0, name);
  }
  Tensor x = randn({4, 3}, TensorOptions(DType::f32, d));
  check_close((*b)(x), (*a)(x).to(kCPU, DType::f64), 0.0, "same outputs");
  // the plain-reference overloads
  TwoLayer c2;
  load(c2, path);
  check_close(c2.fc2->bias, a->fc2->bias.to(kCPU, DType::f64), 0.0, "by reference");
  save(c2, tmp / "again.safetensors");
  CHECK(load_safetensors(tmp / "again.safetensors").size() == c.tensors.size());
}

TEST_CASE("load reports bad files by file and tensor and leaves the module unchanged", "[nn][save]") {
  TempDir tmp;
  manual_seed(3);
  TwoLayer model;
  const Tensor before = model.fc1->weight.clone().detach();
  auto unchanged = [&] { check_close(model.fc1->weight, before.to(DType::f64), 0.0, "unchanged"); };

  const std::string missing = tmp / "nope.safetensors";
  CHECK_THROWS_WITH(load(model, missing), Catch::Contains("nope.safetensors"));

  // a model of another shape
  TwoLayer wide(7);
  const std::string wide_path = tmp / "wide.safetensors";
  save(wide, wide_path);
  CHECK_THROWS_WITH(load(model, wide_path), Catch::Contains("wide.safetensors") && Catch::Contains("fc1.weight") &&
                                                Catch::Contains("[7, 3]") && Catch::Contains("[5, 3]"));
  unchanged();

  // a missing tensor (strict) and an extra one
  TensorMap m;
  for (const auto& [name, t] : model.state_dict()) m.emplace(name, t);
  m.erase("fc2.bias");
  m.emplace("extra.weight", zeros({1}));
  const std::string partial = tmp / "partial.safetensors";
  save_safetensors(partial, m);
  CHECK_THROWS_WITH(load(model, partial), Catch::Contains("partial.safetensors") && Catch::Contains("fc2.bias") &&
                                              Catch::Contains("extra.weight"));
  unchanged();

  // a wrong dtype
  TensorMap m64;
  for (const auto& [name, t] : model.state_dict()) m64.emplace(name, t.to(DType::f64));
  const std::string f64_path = tmp / "f64.safetensors";
  save_safetensors(f64_path, m64);
  CHECK_THROWS_WITH(load(model, f64_path), Catch::Contains("f64.safetensors") && Catch::Contains("float64"));

  // a NaN
  TensorMap mn;
  for (const auto& [name, t] : model.state_dict()) mn.emplace(name, t.clone().detach());
  mn.at("norm.weight").fill_(std::nan(""));
  const std::string nan_path = tmp / "nan.safetensors";
  save_safetensors(nan_path, mn);
  CHECK_THROWS_WITH(load(model, nan_path), Catch::Contains("nan.safetensors") && Catch::Contains("norm.weight"));

  // a truncated file
  const std::string good = tmp / "good.safetensors";
  save(model, good);
  const auto size = fs::file_size(good);
  const std::string cut = tmp / "cut.safetensors";
  fs::copy_file(good, cut);
  fs::resize_file(cut, size - 7);
  CHECK_THROWS_WITH(load(model, cut), Catch::Contains("cut.safetensors"));
  unchanged();

  // saving into a directory that does not exist names the path and leaves nothing behind
  const std::string bad_dir = tmp / "no/such/dir/model.safetensors";
  CHECK_THROWS_WITH(save(model, bad_dir), Catch::Contains("no/such/dir"));
  // a failed save leaves an existing file as it was
  const std::string keep = tmp / "keep.safetensors";
  save(model, keep);
  const auto keep_size = fs::file_size(keep);
  fs::permissions(tmp.dir, fs::perms::owner_read | fs::perms::owner_exec);
  const bool can_write = ::access(tmp.dir.c_str(), W_OK) == 0;  // root ignores permissions
  if (!can_write) CHECK_THROWS_WITH(save(wide, keep), Catch::Contains("keep.safetensors"));
  fs::permissions(tmp.dir, fs::perms::owner_all);
  if (!can_write) CHECK(fs::file_size(keep) == keep_size);
  std::shared_ptr<TwoLayer> null;
  CHECK_THROWS_WITH(save(null, keep), Catch::Contains("null"));
}

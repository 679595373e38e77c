// Pretrained-weight loading: position-embedding resampling against references computed
// here (a direct, non-separable 2-D formula) and against PyTorch's F.interpolate (stored in
// the golden file), and load_pretrained on tiny timm-layout ViTs: exact load, head drop on
// a class-count mismatch, pos_embed resampling on an image-size mismatch, missing and
// unexpected keys, strict mode, shape errors that leave the model untouched, dtype
// conversion and the class-token-last layout.
#include <petal/nn.h>
#include <petal/nn/pretrained.h>
#include <petal/serialize.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>

#include "testing.h"

using namespace petal;
using nn::PosEmbedInterpolation;
using Catch::Matchers::Contains;

namespace {

nn::ViTConfig tiny_config(int64_t img_size, int64_t num_classes) {
  nn::ViTConfig c = nn::ViTConfig::vit_tiny_patch16_224(num_classes);
  c.img_size = img_size;
  c.patch_size = 8;
  c.width = 16;
  c.depth = 2;
  c.heads = 2;
  return c;
}

TensorMap to_map(const nn::StateDict& sd) {
  TensorMap m;
  for (const auto& [k, v] : sd) m[k] = v.clone();
  return m;
}

// Direct 2-D reference, written independently of the separable implementation: each output
// pixel sums its taps over both axes at once.
double keys_cubic(double x, double a) {
  x = std::fabs(x);
  if (x <= 1) return (a + 2) * x * x * x - (a + 3) * x * x + 1;
  if (x < 2) return a * x * x * x - 5 * a * x * x + 8 * a * x - 4 * a;
  return 0;
}

Tensor reference_resample(const Tensor& pos, int64_t gh, int64_t gw, int64_t nh, int64_t nw, PosEmbedInterpolation mode) {
  const int64_t D = pos.size(2);
  std::vector<double> in = pos.tolist<double>();
  std::vector<double> out(static_cast<size_t>((1 + nh * nw) * D));
  for (int64_t c = 0; c < D; ++c) out[c] = in[c];
  auto at = [&](int64_t y, int64_t x, int64_t c) {
    y = std::min(std::max<int64_t>(y, 0), gh - 1);
    x = std::min(std::max<int64_t>(x, 0), gw - 1);
    return in[static_cast<size_t>((1 + y * gw + x) * D + c)];
  };
  for (int64_t i = 0; i < nh; ++i) {
    for (int64_t j = 0; j < nw; ++j) {
      for (int64_t c = 0; c < D; ++c) {
        double v = 0;
        const double sy = (i + 0.5) * gh / nh - 0.5, sx = (j + 0.5) * gw / nw - 0.5;
        if (mode == PosEmbedInterpolation::Bicubic) {
          const double fy = std::floor(sy), fx = std::floor(sx);
          for (int dy = -1; dy <= 2; ++dy)
            for (int dx = -1; dx <= 2; ++dx)
              v += keys_cubic(sy - (fy + dy), -0.75) * keys_cubic(sx - (fx + dx), -0.75) *
                   at(static_cast<int64_t>(fy) + dy, static_cast<int64_t>(fx) + dx, c);
        } else {  // bilinear: source clamped at 0, neighbours clamped at the far edge
          const double cy = std::max(sy, 0.0), cx = std::max(sx, 0.0);
          const int64_t y0 = static_cast<int64_t>(cy), x0 = static_cast<int64_t>(cx);
          const double ly = cy - y0, lx = cx - x0;
          v = (1 - ly) * ((1 - lx) * at(y0, x0, c) + lx * at(y0, x0 + 1, c)) +
              ly * ((1 - lx) * at(y0 + 1, x0, c) + lx * at(y0 + 1, x0 + 1, c));
        }
        out[static_cast<size_t>((1 + i * nw + j) * D + c)] = v;
      }
    }
  }
  return tensor(out, {1, 1 + nh * nw, D}, TensorOptions(DType::f64));
}

struct TempFile {
  std::string path;
  explicit TempFile(const std::string& name)
      : path((std::filesystem::temp_directory_path() / ("petal_test_pretrained_" + std::to_string(::getpid()) + "_" + name))
                 .string()) {}
  ~TempFile() { std::remove(path.c_str()); }
};

}  // namespace

TEST_CASE("resample_pos_embed matches a direct 2-D reference", "[pretrained]") {
  Tensor pos = testing::random_input({1, 1 + 4 * 5, 3}, 21);
  for (auto mode : {PosEmbedInterpolation::Bicubic, PosEmbedInterpolation::Bilinear}) {
    for (auto [nh, nw] : std::vector<std::pair<int64_t, int64_t>>{{7, 9}, {2, 3}, {4, 5}, {1, 1}, {13, 6}}) {
      INFO("mode " << static_cast<int>(mode) << ", grid 4x5 -> " << nh << "x" << nw);
      Tensor got = nn::resample_pos_embed(pos, 4, 5, nh, nw, 1, mode);
      testing::check_close(got, reference_resample(pos, 4, 5, nh, nw, mode), 1e-12);
    }
  }
  // Same size is the identity in every mode; the class token row is never touched.
  for (auto mode : {PosEmbedInterpolation::Bicubic, PosEmbedInterpolation::Bilinear,
                    PosEmbedInterpolation::BicubicAntialias}) {
    testing::check_close(nn::resample_pos_embed(pos, 4, 5, 4, 5, 1, mode), pos, 1e-12, "identity");
    Tensor up = nn::resample_pos_embed(pos, 4, 5, 9, 9, 1, mode);
    testing::check_close(up.narrow(1, 0, 1), pos.narrow(1, 0, 1), 0.0, "class token row");
  }
  // float32 in, float32 out; wrong token count is an error naming both.
  Tensor p32 = pos.to(DType::f32);
  CHECK(nn::resample_pos_embed(p32, 4, 5, 6, 6).dtype() == DType::f32);
  CHECK_THROWS_WITH(nn::resample_pos_embed(pos, 5, 5, 6, 6), Contains("5x5") && Contains("[1, 21, 3]"));
}

TEST_CASE("resample_pos_embed matches PyTorch's F.interpolate in every mode", "[pretrained]") {
  TensorMap golden = load_safetensors(PETAL_SOURCE_DIR "/tests/golden/vit_tiny_golden.safetensors");
  const Tensor& input = golden.at("resample.input");  // [1, 1 + 5*5, 3]
  const std::pair<const char*, PosEmbedInterpolation> modes[] = {
      {"bicubic", PosEmbedInterpolation::Bicubic},
      {"bicubic_antialias", PosEmbedInterpolation::BicubicAntialias},
      {"bilinear", PosEmbedInterpolation::Bilinear}};
  for (const auto& [name, mode] : modes) {
    for (auto [h, w] : std::vector<std::pair<int64_t, int64_t>>{{7, 6}, {3, 3}}) {
      const std::string key = std::string("resample.") + name + "." + std::to_string(h) + "x" + std::to_string(w);
      INFO(key);
      REQUIRE(golden.count(key) == 1);
      Tensor got = nn::resample_pos_embed(input.to(DType::f64), 5, 5, h, w, 1, mode);
      testing::check_close(got, golden.at(key).to(DType::f64), 1e-6, key);  // reference stored as float32
    }
  }
}

TEST_CASE("load_pretrained: same config loads every tensor exactly", "[pretrained]") {
  manual_seed(3);
  nn::ViT source(tiny_config(32, 5));
  TempFile file("same.safetensors");
  save_safetensors(file.path, to_map(source.state_dict()));

  manual_seed(4);
  nn::ViT model(tiny_config(32, 5));
  nn::PretrainedReport r = nn::load_pretrained(model, file.path);
  CHECK(r.loaded.size() == source.state_dict().size());
  CHECK(r.missing.empty());
  CHECK(r.unexpected.empty());
  CHECK_FALSE(r.head_dropped);
  CHECK_FALSE(r.pos_embed_resampled);
  for (const auto& [name, t] : source.state_dict()) {
    INFO(name);
    testing::check_close(model.get_tensor(name), t.to(DType::f64), 0.0);
  }
  // The loaded parameters are still the trainable leaves.
  for (const auto& [name, p] : model.named_parameters()) CHECK(p.requires_grad());
}

TEST_CASE("load_pretrained: other class count drops the head and other image size resamples pos_embed", "[pretrained]") {
  manual_seed(5);
  nn::ViT source(tiny_config(32, 7));  // 4x4 grid, 7 classes
  TempFile file("timm.safetensors");
  save_safetensors(file.path, to_map(source.state_dict()));

  auto mode = GENERATE(PosEmbedInterpolation::BicubicAntialias, PosEmbedInterpolation::Bicubic,
                       PosEmbedInterpolation::Bilinear);
  manual_seed(6);
  nn::ViT model(tiny_config(48, 5));  // 6x6 grid, 5 classes
  const Tensor fresh_head = model.head->weight.clone();
  const Tensor fresh_head_bias = model.head->bias.clone();
  nn::PretrainedOptions options;
  options.interpolation = mode;
  nn::PretrainedReport r = nn::load_pretrained(model, file.path, options);

  CHECK(r.head_dropped);
  CHECK_THAT(r.head_reason, Contains("7 classes in the file") && Contains("5 in the model"));
  CHECK(r.pos_embed_resampled);
  CHECK(r.pos_grid_from_h == 4);
  CHECK(r.pos_grid_to_h == 6);
  CHECK(r.missing.empty());
  CHECK(r.unexpected.empty());
  CHECK_THAT(r.summary(), Contains("head dropped") && Contains("4x4 grid to 6x6"));
  // The freshly initialized head is kept.
  testing::check_close(model.head->weight, fresh_head.to(DType::f64), 0.0, "head.weight");
  testing::check_close(model.head->bias, fresh_head_bias.to(DType::f64), 0.0, "head.bias");
  // pos_embed: class token row copied, grid resampled.
  Tensor expected_pos = nn::resample_pos_embed(source.pos_embed.to(DType::f64), 4, 4, 6, 6, 1, mode);
  testing::check_close(model.pos_embed, expected_pos, 1e-6, "pos_embed");
  testing::check_close(model.pos_embed.narrow(1, 0, 1), source.pos_embed.narrow(1, 0, 1).to(DType::f64), 0.0);
  if (mode != PosEmbedInterpolation::BicubicAntialias) {
    testing::check_close(model.pos_embed, reference_resample(source.pos_embed, 4, 4, 6, 6, mode), 1e-6,
                         "pos_embed vs direct reference");
  }
  // Everything else is the source's.
  for (const auto& [name, t] : source.state_dict()) {
    if (name == "pos_embed" || name.rfind("head.", 0) == 0) continue;
    INFO(name);
    testing::check_close(model.get_tensor(name), t.to(DType::f64), 0.0);
  }
  // And the model runs at its own size.
  Tensor logits = model.forward(testing::random_input({2, 3, 48, 48}, 7, DType::f32));
  CHECK(logits.shape() == Shape{2, 5});
}

TEST_CASE("load_pretrained reports missing and unexpected keys; strict mode rejects them", "[pretrained]") {
  manual_seed(8);
  nn::ViT source(tiny_config(32, 5));
  TensorMap weights = to_map(source.state_dict());
  weights.erase("norm.weight");
  weights.erase("blocks.1.mlp.fc2.bias");
  weights["dist_token"] = zeros({1, 1, 16});
  weights["fc_norm.weight"] = ones({16});

  manual_seed(9);
  nn::ViT model(tiny_config(32, 5));
  const Tensor norm_before = model.norm->weight.clone();
  nn::PretrainedReport r = nn::load_pretrained(model, weights);
  CHECK(r.missing == std::vector<std::string>{"blocks.1.mlp.fc2.bias", "norm.weight"});
  CHECK(r.unexpected == std::vector<std::string>{"dist_token", "fc_norm.weight"});
  CHECK_THAT(r.summary(), Contains("missing (left as initialized): blocks.1.mlp.fc2.bias, norm.weight") &&
                              Contains("unexpected (ignored): dist_token, fc_norm.weight"));
  testing::check_close(model.norm->weight, norm_before.to(DType::f64), 0.0, "missing key left as initialized");

  nn::PretrainedOptions strict;
  strict.strict = true;
  CHECK_THROWS_WITH(nn::load_pretrained(model, weights, strict),
                    Contains("missing keys: blocks.1.mlp.fc2.bias, norm.weight") &&
                        Contains("unexpected keys: dist_token, fc_norm.weight"));
}

TEST_CASE("load_pretrained rejects weights of another architecture and leaves the model untouched", "[pretrained]") {
  manual_seed(10);
  nn::ViTConfig wide = tiny_config(32, 5);
  wide.width = 24;
  wide.heads = 3;
  nn::ViT source(wide);
  TempFile file("wide.safetensors");
  save_safetensors(file.path, to_map(source.state_dict()));

  manual_seed(11);
  nn::ViT model(tiny_config(32, 5));
  nn::StateDict before;
  for (const auto& [k, v] : model.state_dict()) before.insert(k, v.clone());
  try {
    nn::load_pretrained(model, file.path);
    FAIL("no error for weights of another width");
  } catch (const Error& e) {
    const std::string msg = e.what();
    INFO(msg);
    CHECK(msg.find(file.path) != std::string::npos);
    CHECK(msg.find("blocks.0.attn.qkv.weight: file shape [72, 24] vs model shape [48, 16]") != std::string::npos);
    CHECK(msg.find("cls_token") != std::string::npos);
  }
  for (const auto& [k, v] : before) {
    INFO(k);
    testing::check_close(model.get_tensor(k), v.to(DType::f64), 0.0);
  }
}

TEST_CASE("load_pretrained converts half-precision files and handles the class-token-last layout", "[pretrained]") {
  manual_seed(12);
  nn::ViT source(tiny_config(32, 5));
  TensorMap half;
  for (const auto& [k, v] : source.state_dict()) half[k] = v.to(DType::bf16);

  nn::ViTConfig last = tiny_config(32, 5);
  last.class_token_first = false;
  manual_seed(13);
  nn::ViT model(last);
  nn::PretrainedReport r = nn::load_pretrained(model, half);
  CHECK(r.missing.empty());
  CHECK(model.cls_token.dtype() == DType::f32);
  testing::check_close(model.get_tensor("blocks.0.attn.qkv.weight"),
                       half.at("blocks.0.attn.qkv.weight").to(DType::f64), 0.0, "bf16 values converted exactly");
  // timm's row 0 (class token) goes to the end; the grid rows move up by one.
  Tensor file_pos = half.at("pos_embed").to(DType::f64);
  testing::check_close(model.pos_embed.narrow(1, 16, 1), file_pos.narrow(1, 0, 1), 0.0, "class token row last");
  testing::check_close(model.pos_embed.narrow(1, 0, 16), file_pos.narrow(1, 1, 16), 0.0, "grid rows first");
}

TEST_CASE("load_pretrained refuses files that match too little, and non-finite values", "[pretrained][bad_inputs]") {
  manual_seed(14);
  nn::ViT source(tiny_config(32, 5));
  manual_seed(15);
  nn::ViT model(tiny_config(32, 5));
  const Tensor cls_before = model.cls_token.clone();
  nn::PretrainedOptions half;
  half.min_loaded_fraction = 0.5;

  // Keys of another naming scheme: nothing matches.
  TensorMap renamed;
  for (const auto& [k, v] : source.state_dict()) renamed["model." + k] = v;
  CHECK_THROWS_WITH(nn::load_pretrained(model, renamed, half),
                    Contains("only 0 of the model's") && Contains("model tensors not in the file: cls_token") &&
                        Contains("file tensors the model does not have: model."));
  CHECK_NOTHROW(nn::load_pretrained(model, renamed));  // the default accepts it (and reports it)

  // Under half of the tensors: refused; the full set: accepted.
  TensorMap few = to_map(source.state_dict());
  size_t keep = 0;
  for (auto it = few.begin(); it != few.end();) it = (keep++ % 3 == 0) ? std::next(it) : few.erase(it);
  CHECK_THROWS_WITH(nn::load_pretrained(model, few, half), Contains("at least 50% required"));
  testing::check_close(model.cls_token, cls_before.to(DType::f64), 0.0, "refused load leaves the model untouched");

  TensorMap bad = to_map(source.state_dict());
  Tensor w = bad.at("blocks.0.attn.qkv.weight").clone();
  w.data<float>()[5] = std::numeric_limits<float>::infinity();
  bad["blocks.0.attn.qkv.weight"] = w;
  CHECK_THROWS_WITH(nn::load_pretrained(model, bad, half),
                    Contains("'blocks.0.attn.qkv.weight'") && Contains("non-finite") && Contains("flat index 5"));
  testing::check_close(model.cls_token, cls_before.to(DType::f64), 0.0, "refused load leaves the model untouched");
  CHECK(nn::load_pretrained(model, to_map(source.state_dict()), half).loaded.size() == model.state_dict().size());
}

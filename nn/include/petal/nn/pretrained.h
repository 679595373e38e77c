// Loading pretrained timm / Hugging Face ViT weights (`vit_*_patch16_224` safetensors files,
// timm key names) into petal's timm-layout nn::ViT, by key name:
//  - a head whose number of classes differs from the model's is dropped (the model keeps
//    its freshly initialized head) and the report says so;
//  - a position embedding made for another grid (another image size) is resampled: the
//    class token's row is kept and the grid part is interpolated in 2-D, by default as timm
//    does it (F.interpolate bicubic, align_corners=False, antialias=True); plain bicubic and
//    bilinear (PyTorch's non-antialiased modes) are available too;
//  - keys the model lacks (unexpected) and model keys the file lacks (missing, left as
//    initialized) are listed in the report; strict mode turns them into an error;
//  - values are converted to the model's dtype and copied onto its device;
//  - a non-finite value in a tensor to be loaded is an error naming it.
// A shape mismatch anywhere else (another width, depth or patch size) is an error that
// lists every offending key with both shapes.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <petal/nn/vit.h>
#include <petal/serialize.h>

namespace petal::nn {

/// How the grid part of a position embedding is resampled.
enum class PosEmbedInterpolation {
  BicubicAntialias,  ///< timm's default: bicubic (a = -0.5), antialiased when shrinking (PIL-style)
  Bicubic,           ///< F.interpolate(mode="bicubic", align_corners=False): a = -0.75, edge clamp
  Bilinear,          ///< F.interpolate(mode="bilinear", align_corners=False)
};

struct PretrainedOptions {
  PosEmbedInterpolation interpolation = PosEmbedInterpolation::BicubicAntialias;
  /// Throw (listing them) when any key is missing or unexpected, the dropped head aside.
  bool strict = false;
  /// Throw (listing what did not match) when fewer than this fraction of the model's
  /// tensors (the dropped head aside) would be loaded; 0 accepts any number, even none.
  double min_loaded_fraction = 0.0;
};

/// What load_pretrained did.
struct PretrainedReport {
  std::vector<std::string> loaded;      ///< model keys that received the file's values
  std::vector<std::string> missing;     ///< model keys absent from the file (kept as initialized)
  std::vector<std::string> unexpected;  ///< file keys the model does not have (ignored)
  bool head_dropped = false;            ///< the file's head.* was skipped
  std::string head_reason;              ///< why, e.g. "1000 classes in the file, 5 in the model"
  bool pos_embed_resampled = false;
  int64_t pos_grid_from_h = 0, pos_grid_from_w = 0, pos_grid_to_h = 0, pos_grid_to_w = 0;
  std::string pos_interpolation;        ///< the resampling used, in words
  /// A multi-line human-readable summary (for logs).
  std::string summary() const;
};

/// Loads a safetensors file of timm ViT weights into model (see the file comment).
PretrainedReport load_pretrained(ViT& model, const std::string& path, const PretrainedOptions& options = {});

/// Same, from tensors already in memory (keys as timm names them).
PretrainedReport load_pretrained(ViT& model, const TensorMap& weights, const PretrainedOptions& options = {});

/// Resamples a position embedding [1, P + gh*gw, D] (P prefix tokens first, then the grid
/// row-major) to [1, P + new_h*new_w, D]; the prefix rows are copied unchanged. Computed in
/// float64 on the CPU; the result has pos_embed's dtype and device.
Tensor resample_pos_embed(const Tensor& pos_embed, int64_t grid_h, int64_t grid_w, int64_t new_h, int64_t new_w,
                          int64_t num_prefix_tokens = 1,
                          PosEmbedInterpolation interpolation = PosEmbedInterpolation::BicubicAntialias);

}  // namespace petal::nn

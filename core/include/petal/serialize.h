// Reading and writing tensors in the safetensors format (Hugging Face): an 8-byte
// little-endian header length N, an N-byte JSON header mapping each tensor name to its
// dtype, shape and [begin, end) byte range in the data section, then the data section.
// Loading validates the whole header against the file before reading any data, and every
// problem throws petal::Error naming the file and the key. Writing is atomic: the file is
// written to "<path>.tmp.<pid>" and renamed over <path> only once complete.
#pragma once
#include <cstdint>
#include <map>
#include <string>

#include <petal/tensor.h>

namespace petal {

/// Named tensors, ordered by name (the order they are written in).
using TensorMap = std::map<std::string, Tensor>;
/// The string-to-string "__metadata__" entry of a safetensors header.
using SafetensorsMetadata = std::map<std::string, std::string>;

/// A whole safetensors file: its tensors (contiguous, on the CPU) and its metadata.
struct SafetensorsContents {
  TensorMap tensors;
  SafetensorsMetadata metadata;
};

/// Writes tensors (any device, dtype and strides; copied to the CPU one at a time) and
/// metadata to path, atomically. Throws petal::Error naming the path on any failure, in
/// which case an existing file at path is left untouched.
void save_safetensors(const std::string& path, const TensorMap& tensors, const SafetensorsMetadata& metadata = {});

/// Reads every tensor of a safetensors file onto the CPU (validating the file first).
TensorMap load_safetensors(const std::string& path);

/// Reads every tensor and the "__metadata__" entry of a safetensors file.
SafetensorsContents load_safetensors_contents(const std::string& path);

/// Reads only the "__metadata__" entry (validates the header, reads no tensor data).
SafetensorsMetadata load_safetensors_metadata(const std::string& path);

/// Serializes to an in-memory safetensors image (the exact bytes save_safetensors writes).
std::string safetensors_to_bytes(const TensorMap& tensors, const SafetensorsMetadata& metadata = {});

/// Parses an in-memory safetensors image; `name` is used in error messages.
SafetensorsContents safetensors_from_bytes(const std::string& bytes, const std::string& name = "<memory>");

/// Throws petal::Error naming `where` and the tensor when a floating-point tensor of the
/// map holds a NaN or an infinity (the first offending index and value are given): weights
/// loaded from a file go through this so a corrupt file cannot silently predict NaN.
void check_finite(const TensorMap& tensors, const std::string& where);

/// Safetensors dtype string ("F32", "BF16", "BOOL", ...) of a petal dtype.
const char* safetensors_dtype_name(DType dtype);

}  // namespace petal

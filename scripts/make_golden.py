#!/usr/bin/python3
"""Generates tests/golden/vit_tiny_golden.safetensors, the reference data of the golden test
(tests/test_golden_vit.cpp), with plain PyTorch (no timm needed).

The model is a small timm-layout VisionTransformer written out here with timm's semantics:
Conv2d patch embedding (kernel = stride = patch) flattened row-major, class token first,
learned position embedding added to every token, pre-norm blocks
x = x + proj(attn(norm1(x))); x = x + fc2(GELU_erf(fc1(norm2(x)))), qkv as one Linear split as
reshape(B, N, 3, H, D/H), softmax(q k^T / sqrt(D/H)) v, LayerNorm eps 1e-6, a final norm, the
head on the class token, mean cross entropy. Parameter names are timm's.

Weights are random with deliberately large scales (so attention is far from uniform and GELU
far from linear; timm's std 0.02 init would make the test weak). Every reference (logits,
loss, gradients) is computed in float64 from the float32 weights and inputs, then rounded to
float32, so a float32 implementation is compared against the exact answer.

The file also holds references for position-embedding resampling: a random [1, 1 + 5*5, 3]
table resampled by torch.nn.functional.interpolate (align_corners=False) to a 7x6 and a 3x3
grid, in modes bicubic, bicubic with antialias (timm's default) and bilinear.

The safetensors file is written here by hand from the format's specification, independently
of petal's writer. Usage: /usr/bin/python3 scripts/make_golden.py [output path]
"""
import json
import math
import os
import struct
import sys

import torch
import torch.nn.functional as F

CONFIG = dict(img_size=32, patch_size=8, in_chans=3, width=16, depth=2, heads=2, mlp_ratio=4.0,
              num_classes=5, batch=2, norm_eps=1e-6)
SEED = 20240611


def make_params(gen):
    c = CONFIG
    D, C, P = c["width"], c["in_chans"], c["patch_size"]
    hidden = int(D * c["mlp_ratio"])
    n_tokens = (c["img_size"] // P) ** 2 + 1

    def randn(*shape, std=1.0, mean=0.0):
        return torch.randn(*shape, generator=gen, dtype=torch.float32) * std + mean

    p = {}
    p["cls_token"] = randn(1, 1, D, std=0.5)
    p["pos_embed"] = randn(1, n_tokens, D, std=0.5)
    p["patch_embed.proj.weight"] = randn(D, C, P, P, std=1.0 / math.sqrt(C * P * P))
    p["patch_embed.proj.bias"] = randn(D, std=0.1)
    for i in range(c["depth"]):
        b = f"blocks.{i}."
        p[b + "norm1.weight"] = randn(D, std=0.2, mean=1.0)
        p[b + "norm1.bias"] = randn(D, std=0.2)
        p[b + "attn.qkv.weight"] = randn(3 * D, D, std=1.5 / math.sqrt(D))
        p[b + "attn.qkv.bias"] = randn(3 * D, std=0.2)
        p[b + "attn.proj.weight"] = randn(D, D, std=1.0 / math.sqrt(D))
        p[b + "attn.proj.bias"] = randn(D, std=0.1)
        p[b + "norm2.weight"] = randn(D, std=0.2, mean=1.0)
        p[b + "norm2.bias"] = randn(D, std=0.2)
        p[b + "mlp.fc1.weight"] = randn(hidden, D, std=1.0 / math.sqrt(D))
        p[b + "mlp.fc1.bias"] = randn(hidden, std=0.3)
        p[b + "mlp.fc2.weight"] = randn(D, hidden, std=1.0 / math.sqrt(hidden))
        p[b + "mlp.fc2.bias"] = randn(D, std=0.1)
    p["norm.weight"] = randn(D, std=0.2, mean=1.0)
    p["norm.bias"] = randn(D, std=0.2)
    p["head.weight"] = randn(c["num_classes"], D, std=1.0 / math.sqrt(D))
    p["head.bias"] = randn(c["num_classes"], std=0.1)
    return p


def vit_forward(p, images):
    """timm VisionTransformer.forward with the parameters in p (any float dtype)."""
    c = CONFIG
    D, H, eps = c["width"], c["heads"], c["norm_eps"]
    x = F.conv2d(images, p["patch_embed.proj.weight"], p["patch_embed.proj.bias"], stride=c["patch_size"])
    x = x.flatten(2).transpose(1, 2)  # [B, N, D], patches row-major
    B, N, _ = x.shape
    x = torch.cat([p["cls_token"].expand(B, -1, -1), x], dim=1)
    x = x + p["pos_embed"]
    for i in range(c["depth"]):
        b = f"blocks.{i}."
        h = F.layer_norm(x, (D,), p[b + "norm1.weight"], p[b + "norm1.bias"], eps)
        qkv = F.linear(h, p[b + "attn.qkv.weight"], p[b + "attn.qkv.bias"])
        qkv = qkv.reshape(B, N + 1, 3, H, D // H).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = (q * (D // H) ** -0.5) @ k.transpose(-2, -1)
        attn = attn.softmax(dim=-1)
        h = (attn @ v).transpose(1, 2).reshape(B, N + 1, D)
        h = F.linear(h, p[b + "attn.proj.weight"], p[b + "attn.proj.bias"])
        x = x + h
        h = F.layer_norm(x, (D,), p[b + "norm2.weight"], p[b + "norm2.bias"], eps)
        h = F.linear(h, p[b + "mlp.fc1.weight"], p[b + "mlp.fc1.bias"])
        h = F.gelu(h)  # exact (erf) form, timm's nn.GELU default
        h = F.linear(h, p[b + "mlp.fc2.weight"], p[b + "mlp.fc2.bias"])
        x = x + h
    x = F.layer_norm(x, (D,), p["norm.weight"], p["norm.bias"], eps)
    return F.linear(x[:, 0], p["head.weight"], p["head.bias"])


def resample_references(gen):
    out = {}
    grid, dim = 5, 3
    table = torch.randn(1, 1 + grid * grid, dim, generator=gen, dtype=torch.float32)
    out["resample.input"] = table
    g = table[:, 1:].double().reshape(1, grid, grid, dim).permute(0, 3, 1, 2)
    for (h, w) in [(7, 6), (3, 3)]:
        for mode, aa in [("bicubic", False), ("bicubic_antialias", True), ("bilinear", False)]:
            r = F.interpolate(g, size=(h, w), mode=mode.split("_")[0], align_corners=False, antialias=aa)
            r = r.permute(0, 2, 3, 1).reshape(1, h * w, dim)
            out[f"resample.{mode}.{h}x{w}"] = torch.cat([table[:, :1].double(), r], dim=1).float()
    return out


DTYPES = {torch.float32: "F32", torch.int64: "I64"}


def write_safetensors(path, tensors, metadata):
    """Minimal safetensors writer following the format specification."""
    header = {"__metadata__": metadata}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        data = t.numpy().tobytes()  # little-endian on every host torch runs on here
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "tests", "golden", "vit_tiny_golden.safetensors")
    gen = torch.Generator().manual_seed(SEED)
    c = CONFIG
    params = make_params(gen)
    images = torch.randn(c["batch"], c["in_chans"], c["img_size"], c["img_size"], generator=gen, dtype=torch.float32)
    labels = torch.randint(0, c["num_classes"], (c["batch"],), generator=gen, dtype=torch.int64)

    # float64 references from the float32 values.
    p64 = {k: v.double().requires_grad_(True) for k, v in params.items()}
    logits = vit_forward(p64, images.double())
    loss = F.cross_entropy(logits, labels)
    loss.backward()

    # Sanity: the float32 forward agrees (the golden data is float32-representable).
    with torch.no_grad():
        logits32 = vit_forward(params, images)
    err = (logits32.double() - logits).abs().max().item()
    assert err < 1e-4, f"float32 forward differs from float64 by {err}"

    tensors = {}
    for k, v in params.items():
        tensors["param." + k] = v
        tensors["grad." + k] = p64[k].grad.float()
    tensors["input.images"] = images
    tensors["input.labels"] = labels
    tensors["output.logits"] = logits.detach().float()
    tensors["output.loss"] = loss.detach().float().reshape(())
    tensors.update(resample_references(gen))

    meta = {k: str(v) for k, v in CONFIG.items()}
    meta["generator"] = "scripts/make_golden.py"
    meta["torch_version"] = torch.__version__
    meta["seed"] = str(SEED)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_safetensors(path, tensors, meta)
    n_params = sum(v.numel() for v in params.values())
    print(f"wrote {path}: {len(tensors)} tensors, {n_params} parameters, {os.path.getsize(path)} bytes, "
          f"loss {loss.item():.6f}, logits {logits.detach().numpy().round(4).tolist()}")


if __name__ == "__main__":
    main()

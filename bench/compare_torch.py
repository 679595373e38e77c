#!/usr/bin/env python3
"""petal's benchmarks and PyTorch on the same shapes, side by side, in one run.

Runs petal's Google Benchmark binary (bench/petal_bench) for a fixed list of cases, then
times the same computation through PyTorch (F.scaled_dot_product_attention, F.layer_norm,
F.cross_entropy, F.conv2d for the patch embedding, the AdamW/SGD updates, and a whole ViT
training step), and prints one table: per case, petal's time, PyTorch's time and
PyTorch/petal (> 1: petal is faster).

Works with a current PyTorch from PyPI (2.x) and with Debian's python3-torch (1.13, which has
no scaled_dot_product_attention: the attention is then composed from matmul and softmax and
the row says so). petal's build and tests never depend on PyTorch.

    python3 bench/compare_torch.py --bench build/release/bench/petal_bench [--device cpu|cuda]
        [--threads 2] [--min-time 0.5] [--only attention,vit] [--markdown OUT.md] [--compile]

Both sides run with the same number of threads (OMP_NUM_THREADS for petal,
torch.set_num_threads for PyTorch). The environment is passed through unchanged, including
OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE; the header of the table prints them, so numbers taken
with them unset say so.
"""
import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bench", default="build/release/bench/petal_bench", help="petal's benchmark binary")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when PyTorch sees a GPU)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for both (default: all cores)")
    p.add_argument("--min-time", type=float, default=0.5, help="seconds per case and side")
    p.add_argument("--only", default="", help="comma-separated groups: attention,layernorm,cross_entropy,"
                   "patch_embed,optimizer,vit")
    p.add_argument("--markdown", default="", help="also write the table as Markdown to this file")
    p.add_argument("--compile", action="store_true", help="add torch.compile rows for the ViT step (torch 2)")
    return p.parse_args()


# ---------------------------------------------------------------------------------------------
# The cases: petal's benchmark name (as Google Benchmark prints it, without /real_time) and a
# builder for the same computation in PyTorch. Shapes follow bench/bench_*.cpp.

def cases(torch, F, dev):
    out = []
    f32 = torch.float32

    def randn(*shape, grad=False, dtype=f32):
        t = torch.randn(*shape, device=dev, dtype=dtype)
        return t.requires_grad_() if grad else t

    has_sdpa = hasattr(F, "scaled_dot_product_attention")

    def attention(q, k, v):
        if has_sdpa:
            return F.scaled_dot_product_attention(q, k, v)
        s = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
        return torch.matmul(torch.softmax(s, dim=-1), v)

    sdpa_name = "F.scaled_dot_product_attention" if has_sdpa else "matmul+softmax+matmul (torch 1.x)"
    variant = "cuda_fused" if dev == "cuda" else "cpu_fused"
    for d in ((768,) if dev == "cuda" else (192, 384, 768)):
        B, H, S, Dh = 8, d // 64, 197, 64

        def fwd(B=B, H=H, S=S, Dh=Dh):
            q, k, v = randn(B, H, S, Dh), randn(B, H, S, Dh), randn(B, H, S, Dh)

            def run():
                with torch.no_grad():
                    return attention(q, k, v)
            return run
        out.append(("attention", f"BM_attention_forward/{variant}/{d}", f"attention fwd B={B} H={H} S={S} Dh={Dh} f32",
                    sdpa_name, fwd))
    for d in ((384, 768) if dev == "cuda" else (384,)):
        B, H, S, Dh = 8, d // 64, 197, 64

        def fwdbwd(B=B, H=H, S=S, Dh=Dh):
            q, k, v = randn(B, H, S, Dh, grad=True), randn(B, H, S, Dh, grad=True), randn(B, H, S, Dh, grad=True)
            w = randn(B, H, S, Dh)

            def run():
                attention(q, k, v).backward(w)
                q.grad = k.grad = v.grad = None
            return run
        out.append(("attention", f"BM_attention_forward_backward/{variant}/{d}",
                    f"attention fwd+bwd B={B} H={H} S={S} Dh={Dh} f32", sdpa_name, fwdbwd))

    dv = "cuda" if dev == "cuda" else "cpu"
    for b, d in ((8, 192), (8, 384), (8, 768)):
        rows = b * 197

        def ln(rows=rows, d=d):
            x, w, bb = randn(rows, d), randn(d), randn(d)

            def run():
                with torch.no_grad():
                    return F.layer_norm(x, (d,), w, bb)
            return run
        out.append(("layernorm", f"BM_layer_norm_forward/{dv}/{b}/{d}", f"layer_norm fwd [{rows}, {d}] f32",
                    "F.layer_norm", ln))
    for b, d in ((8, 768),):
        rows = b * 197

        def lnb(rows=rows, d=d):
            x, w, bb, dy = randn(rows, d, grad=True), randn(d, grad=True), randn(d, grad=True), randn(rows, d)

            def run():
                F.layer_norm(x, (d,), w, bb).backward(dy)
                x.grad = w.grad = bb.grad = None
            return run
        out.append(("layernorm", f"BM_layer_norm_forward_backward/{dv}/{b}/{d}",
                    f"layer_norm fwd+bwd [{rows}, {d}] f32", "F.layer_norm", lnb))

    def ce_targets(rows, classes):
        return torch.tensor([(r * 7919) % classes for r in range(rows)], device=dev)
    for rows, classes in ((256, 1000), (8 * 197, 1000)):
        def ce(rows=rows, classes=classes):
            x, t = randn(rows, classes), ce_targets(rows, classes)

            def run():
                with torch.no_grad():
                    return F.cross_entropy(x, t, label_smoothing=0.1)
            return run
        out.append(("cross_entropy", f"BM_cross_entropy_forward/{dv}/{rows}/{classes}",
                    f"cross_entropy fwd [{rows}, {classes}] ls=0.1", "F.cross_entropy", ce))
    for rows, classes in ((8 * 197, 1000),):
        def ceb(rows=rows, classes=classes):
            x, t = randn(rows, classes, grad=True), ce_targets(rows, classes)

            def run():
                F.cross_entropy(x, t, label_smoothing=0.1).backward()
                x.grad = None
            return run
        out.append(("cross_entropy", f"BM_cross_entropy_forward_backward/{dv}/{rows}/{classes}",
                    f"cross_entropy fwd+bwd [{rows}, {classes}] ls=0.1", "F.cross_entropy", ceb))

    for b, d in ((8, 192), (8, 768)):
        def pe(b=b, d=d):
            x, w, bb = randn(b, 3, 224, 224), randn(d, 3, 16, 16), randn(d)

            def run():
                with torch.no_grad():
                    return F.conv2d(x, w, bb, stride=16).flatten(2).transpose(1, 2)
            return run
        out.append(("patch_embed", f"BM_patch_embed_forward/{dv}/{b}/{d}",
                    f"patch embed fwd x[{b},3,224,224] P=16 D={d}", "F.conv2d(stride=16)", pe))

        def peb(b=b, d=d):
            x, w, bb = randn(b, 3, 224, 224, grad=True), randn(d, 3, 16, 16, grad=True), randn(d, grad=True)
            dy = randn(b, 196, d)

            def run():
                F.conv2d(x, w, bb, stride=16).flatten(2).transpose(1, 2).backward(dy)
                x.grad = w.grad = bb.grad = None
            return run
        out.append(("patch_embed", f"BM_patch_embed_forward_backward/{dv}/{b}/{d}",
                    f"patch embed fwd+bwd x[{b},3,224,224] P=16 D={d}", "F.conv2d(stride=16)", peb))

    opt_variant = "cuda_fused" if dev == "cuda" else "cpu_fused"
    for d in ((768,) if dev == "cuda" else (192, 768)):
        def adamw(d=d):
            p = torch.nn.Parameter(randn(4 * d, d))
            p.grad = randn(4 * d, d)
            kw = {"foreach": False} if "foreach" in torch.optim.AdamW.__init__.__code__.co_varnames else {}
            opt = torch.optim.AdamW([p], lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05, **kw)
            return opt.step
        out.append(("optimizer", f"BM_adamw/{opt_variant}/{d}", f"AdamW step [{4 * d}, {d}]",
                    "torch.optim.AdamW (one tensor)", adamw))

        def sgd(d=d):
            p = torch.nn.Parameter(randn(4 * d, d))
            p.grad = randn(4 * d, d)
            opt = torch.optim.SGD([p], lr=1e-2, momentum=0.9, weight_decay=1e-4)
            opt.step()
            return opt.step
        out.append(("optimizer", f"BM_sgd_momentum/{opt_variant}/{d}", f"SGD momentum step [{4 * d}, {d}]",
                    "torch.optim.SGD", sgd))

    # The whole ViT step of bench_amp.cpp: ViT-Tiny (width 192, depth 12, 3 heads, MLP 768) at
    # 64 px with patch 8 (S = 65), 5 classes, AdamW, batch 16 on the CPU and 64 on cuda.
    batch = 64 if dev == "cuda" else 16
    for amp in (False, True):
        tag = "amp_bf16" if amp else "f32"

        def vit(amp=amp, compiled=False):
            return vit_step(torch, F, dev, batch, amp, attention, compiled)
        out.append(("vit", f"BM_vit_train_step/{dv}_{tag}/{batch}",
                    f"ViT-Ti/8 64px train step, batch {batch}, {tag}" + (" (img/s)"),
                    "torch eager" + (", autocast bf16" if amp else ""), vit))
    return out


def vit_step(torch, F, dev, batch, amp, attention, compiled):
    nn = torch.nn
    width, depth, heads, patch, img, classes = 192, 12, 3, 8, 64, 5

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm1 = nn.LayerNorm(width, eps=1e-6)
            self.qkv = nn.Linear(width, 3 * width)
            self.proj = nn.Linear(width, width)
            self.norm2 = nn.LayerNorm(width, eps=1e-6)
            self.fc1 = nn.Linear(width, 4 * width)
            self.fc2 = nn.Linear(4 * width, width)

        def forward(self, x):
            B, S, D = x.shape
            qkv = self.qkv(self.norm1(x)).reshape(B, S, 3, heads, D // heads).permute(2, 0, 3, 1, 4)
            a = attention(qkv[0], qkv[1], qkv[2]).transpose(1, 2).reshape(B, S, D)
            x = x + self.proj(a)
            return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))

    class ViT(nn.Module):
        def __init__(self):
            super().__init__()
            self.patch = nn.Conv2d(3, width, patch, stride=patch)
            n = (img // patch) ** 2
            self.cls = nn.Parameter(torch.zeros(1, 1, width))
            self.pos = nn.Parameter(torch.randn(1, n + 1, width) * 0.02)
            self.blocks = nn.Sequential(*[Block() for _ in range(depth)])
            self.norm = nn.LayerNorm(width, eps=1e-6)
            self.head = nn.Linear(width, classes)

        def forward(self, x):
            x = self.patch(x).flatten(2).transpose(1, 2)
            x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
            return self.head(self.norm(self.blocks(x))[:, 0])

    torch.manual_seed(0)
    model = ViT().to(dev).train()
    opt = torch.optim.AdamW(model.parameters())
    images = torch.randn(batch, 3, img, img, device=dev)
    labels = torch.randint(0, classes, (batch,), device=dev)
    fwd = torch.compile(model) if compiled else model

    def run():
        with torch.autocast(device_type=dev, dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(fwd(images), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return run


# ---------------------------------------------------------------------------------------------

def time_torch(torch, dev, run, min_time):
    """Median seconds per call over repeated batches, after warm-up."""
    def sync():
        if dev == "cuda":
            torch.cuda.synchronize()
    for _ in range(3):
        run()
    sync()
    samples, spent = [], 0.0
    while spent < min_time or len(samples) < 5:
        t0 = time.perf_counter()
        run()
        sync()
        dt = time.perf_counter() - t0
        samples.append(dt)
        spent += dt
    samples.sort()
    return samples[len(samples) // 2]


def run_petal(bench, names, threads, min_time):
    """petal_bench for the given benchmark names: {name: seconds per iteration}."""
    import re
    regex = "^(" + "|".join(re.escape(n) for n in names) + ")(/real_time)?$"
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [bench, f"--benchmark_filter={regex}", "--benchmark_format=json", f"--benchmark_min_time={min_time}"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"compare_torch: {bench} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    report = json.loads(proc.stdout)
    unit = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
    result = {}
    for b in report.get("benchmarks", []):
        name = b["name"][: -len("/real_time")] if b["name"].endswith("/real_time") else b["name"]
        if b.get("error_occurred"):
            result[name] = None
            continue
        result[name] = b["real_time"] * unit[b.get("time_unit", "ns")]
    return result, report.get("context", {})


def main():
    args = parse_args()
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        sys.exit("compare_torch: PyTorch is not importable: apt-get install python3-torch, or "
                 "python3 -m venv build/venv-torch && build/venv-torch/bin/pip install torch")
    if not os.path.exists(args.bench):
        sys.exit(f"compare_torch: {args.bench} not found: build petal with -DPETAL_BUILD_BENCH=ON "
                 "(libbenchmark-dev) or pass --bench")
    dev = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dev == "cuda" and not torch.cuda.is_available():
        sys.exit("compare_torch: --device cuda but PyTorch sees no GPU")
    torch.set_num_threads(args.threads)
    only = {g for g in args.only.split(",") if g}
    all_cases = [c for c in cases(torch, F, dev) if not only or c[0] in only]
    if args.compile:
        if not hasattr(torch, "compile"):
            sys.exit("compare_torch: --compile needs torch 2")
        extra = []
        for c in all_cases:
            if c[0] == "vit":
                amp = "amp" in c[1]
                extra.append((c[0], c[1], c[2], "torch.compile" + (", autocast bf16" if amp else ""),
                              lambda amp=amp: vit_step(torch, F, dev, 64 if dev == "cuda" else 16, amp,
                                                       F.scaled_dot_product_attention, True)))
        all_cases += extra

    petal_times, context = run_petal(args.bench, sorted({c[1] for c in all_cases}), args.threads, args.min_time)
    rows = []
    for group, name, what, torch_what, build in all_cases:
        p = petal_times.get(name)
        try:
            t = time_torch(torch, dev, build(), args.min_time)
        except Exception as e:  # a case PyTorch cannot run here (old version, no kernel): say so
            t, torch_what = None, f"{torch_what}: {type(e).__name__}: {str(e)[:60]}"
        rows.append((what, name, p, t, torch_what))

    blas = {k: os.environ.get(k, "(unset)") for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    lines = [
        f"# petal vs PyTorch {torch.__version__} on {dev}, {args.threads} threads, same run",
        f"# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"{context.get('host_name', '')} {context.get('date', '')}",
        f"# OPENBLAS_CORETYPE={blas['OPENBLAS_CORETYPE']} OPENBLAS_L2_SIZE={blas['OPENBLAS_L2_SIZE']}; "
        f"petal: {args.bench}; medians over >= {args.min_time} s",
        "",
        "| case | petal | PyTorch | PyTorch / petal | PyTorch op |",
        "|---|---:|---:|---:|---|",
    ]

    def fmt(s, what):
        if s is None:
            return "n/a"
        if "img/s" in what:
            batch = int(what.split("batch ")[1].split(",")[0])
            return f"{batch / s:.1f} img/s"
        return f"{s * 1e3:.3f} ms"
    for what, name, p, t, torch_what in rows:
        ratio = f"{t / p:.2f}x" if p and t else "n/a"
        lines.append(f"| {what} | {fmt(p, what)} | {fmt(t, what)} | {ratio} | {torch_what} |")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        tmp = args.markdown + ".tmp"
        with open(tmp, "w") as f:
            f.write(text + "\n")
        os.replace(tmp, args.markdown)
    missing = [name for _, name, p, _, _ in rows if p is None]
    if missing:
        print(f"# petal cases without a number (not built, or skipped on this device): {', '.join(missing)}",
              file=sys.stderr)


if __name__ == "__main__":
    main()

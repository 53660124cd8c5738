"""Same-card anchor for kernel-lab's GPU backend: what the vendor libraries reach
(cuBLAS through PyTorch, PyTorch's embedding kernel, a device-to-device copy) on
exactly the points kernel-lab measured, on the same GPU, in the same call.

Usage: python3 torch_gpu.py RESULTS.json [RESULTS.json ...] > torch_gpu.jsonl

It reads each results file kernel-lab wrote, times every GPU point in it that
kernel-lab measured (same op, precision, batch, seq, dim, out_dim, vocab), and
prints one JSON line per point, plus a first line naming the device and the
library and a line per copy size. kernel-lab's `compare --anchor` (and the
device-check report) set these beside kernel-lab's own numbers.

FP32 means FP32: TF32 tensor cores are off (allow_tf32 = False), so SGEMM is
the comparison for kernel-lab's FP32 kernels; FP16 uses cuBLAS HGEMM with its
default FP32 accumulation. Timing: CUDA events around each call, warm-up
first, then samples until both MIN_SAMPLES and MIN_MS are reached (or MAX_MS is
spent); the median and p99 are reported. Outputs are preallocated (out=) as
kernel-lab's are; the fresh-allocation form is timed too."""
import json
import sys

import torch
import torch.nn.functional as F

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
DEV = "cuda"
DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}
MIN_SAMPLES, MIN_MS, MAX_MS = 20, 50.0, 1000.0


def emit(**kw):
    print(json.dumps(kw), flush=True)


def time_ms(fn):
    """Median and p99 CUDA-event milliseconds of fn(), and the sample count."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times, spent = [], 0.0
    while True:
        start.record()
        fn()
        end.record()
        end.synchronize()
        t = start.elapsed_time(end)
        times.append(t)
        spent += t
        if (len(times) >= MIN_SAMPLES and spent >= MIN_MS) or spent >= MAX_MS:
            break
    times.sort()
    return times[len(times) // 2], times[min(len(times) - 1, int(0.99 * len(times)))], len(times)


def measure(p):
    dt = DTYPES[p["precision"]]
    rows, d = p["batch"] * p["seq"], p["dim"]
    n = p.get("out_dim", d)
    g = torch.Generator(device=DEV).manual_seed(0)
    if p["op"] == "embedding":
        table = torch.rand(p["vocab"], d, device=DEV, generator=g).to(dt)
        ids = torch.randint(0, p["vocab"], (rows,), device=DEV, generator=g, dtype=torch.int64)
        y = torch.empty(rows, d, device=DEV, dtype=dt)
        fresh = lambda: F.embedding(ids, table)
        out = lambda: torch.index_select(table, 0, ids, out=y)
        moved = 2 * rows * d * table.element_size() + rows * 4  # kernel-lab's model: u32 ids
        flops = 0
    else:
        w = (torch.rand(d, n, device=DEV, generator=g) * 2 - 1).to(dt)
        y = torch.empty(rows, n, device=DEV, dtype=dt)
        es = w.element_size()
        flops = 2 * rows * d * n
        if p["op"] == "matmul":
            x = (torch.rand(rows, d, device=DEV, generator=g) * 2 - 1).to(dt)
            fresh = lambda: x @ w
            out = lambda: torch.mm(x, w, out=y)
            moved = (rows * d + d * n + rows * n) * es
        else:  # embed-project
            table = torch.rand(p["vocab"], d, device=DEV, generator=g).to(dt)
            ids = torch.randint(0, p["vocab"], (rows,), device=DEV, generator=g, dtype=torch.int64)
            xg = torch.empty(rows, d, device=DEV, dtype=dt)
            fresh = lambda: F.embedding(ids, table) @ w
            out = lambda: torch.mm(torch.index_select(table, 0, ids, out=xg), w, out=y)
            moved = (2 * rows * d + d * n + rows * n) * es + rows * 4
    torch.cuda.synchronize()
    out_p50, out_p99, out_n = time_ms(out)
    fresh_p50, _, _ = time_ms(fresh)
    r = dict(p, p50_ms=out_p50, p99_ms=out_p99, samples=out_n, fresh_p50_ms=fresh_p50,
             gbps=moved / (out_p50 * 1e6))
    if flops:
        r["gflops"] = flops / (out_p50 * 1e6)
    return r


def points(paths):
    """The measured GPU points of kernel-lab's results files, each once."""
    seen = set()
    for path in paths:
        with open(path) as f:
            doc = json.load(f)
        for rec in doc.get("records", []):
            pid = rec  # a record's id fields sit at its top level
            if pid.get("backend") != "gpu" or not rec.get("verified") or "latency_ms" not in rec:
                continue
            p = {k: pid[k] for k in ("op", "precision", "batch", "seq", "dim", "vocab") if k in pid}
            p["out_dim"] = pid.get("out_dim", pid["dim"])
            key = tuple(sorted(p.items()))
            if key not in seen and p["precision"] in DTYPES:
                seen.add(key)
                yield p


def main():
    emit(library=f"torch {torch.__version__}", cuda=torch.version.cuda,
         device=torch.cuda.get_device_name(), allow_tf32=torch.backends.cuda.matmul.allow_tf32,
         cublas_fp16_reduced_precision=torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction)
    for mib in (256, 1024):
        n = mib * (1 << 20) // 4
        a = torch.rand(n, device=DEV)
        b = torch.empty_like(a)
        p50, p99, k = time_ms(lambda: b.copy_(a))
        emit(op="copy", bytes=2 * 4 * n, p50_ms=p50, p99_ms=p99, samples=k, gbps=2 * 4 * n / (p50 * 1e6))
        del a, b
    for p in points(sys.argv[1:]):
        try:
            emit(**measure(p))
        except Exception as e:  # an OOM or unsupported dtype is one line, not the end
            emit(**dict(p, skipped=f"{type(e).__name__}: {e}"))
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()

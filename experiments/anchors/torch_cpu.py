"""Same-run anchor for kernel-lab's CPU backend: what PyTorch (MKL / oneDNN)
reaches on the same shapes, on this machine, in the same `kernel-lab run`.

kernel-lab carries this file (include_str!) and starts it as
`python3 -c <this file> <settings JSON>` when a sweep's spec says
`anchor = "torch"`. The settings give the thread count, sampling and budget.
The script prints a first line naming the library, then answers each point
kernel-lab writes to its stdin (one JSON line, right after kernel-lab measured
that point, so both see the machine in the same state) with one JSON line: its
timings, or why it skipped the point. For every op it times two calls:
  fresh: what PyTorch code normally writes (`x @ w`, `F.embedding(ids, table)`),
         which allocates a new output every call and pays its page faults;
  out:   the same kernel into a preallocated output (`torch.mm(..., out=y)`,
         `torch.index_select(..., out=y)`), as kernel-lab's CPU backend does.
Timing: wall clock (perf_counter_ns) around each call, warm-up first, samples
until both min_samples and min_ms are reached or max_ms is spent; medians."""
import json
import sys
import time

import torch
import torch.nn.functional as F

req = json.loads(sys.argv[1])  # settings; the points come on stdin
torch.set_num_threads(int(req["threads"]))
torch.manual_seed(int(req.get("seed", 0)))
MIN_SAMPLES = int(req.get("min_samples", 10))
MIN_MS = float(req.get("min_ms", 100))
MAX_MS = float(req.get("max_ms", 1500))
MAX_SECONDS = float(req.get("max_run_seconds", 3.0))
DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


def emit(**kw):
    print(json.dumps(kw), flush=True)


def median_ms(fn):
    """Median wall milliseconds of fn(), after warm-up; also the sample count."""
    for _ in range(2):
        fn()
    times = []
    start = time.perf_counter_ns()
    while True:
        t0 = time.perf_counter_ns()
        fn()
        times.append((time.perf_counter_ns() - t0) / 1e6)
        spent = (time.perf_counter_ns() - start) / 1e6
        if (len(times) >= MIN_SAMPLES and spent >= MIN_MS) or spent >= MAX_MS:
            break
    times.sort()
    return times[len(times) // 2], len(times)


def attention_pairs(p):
    """Unmasked (query, key) pairs of a point, over every head."""
    s, l = p["seq"], p["context"]
    per_head = s * (l - s) + s * (s + 1) // 2 if p.get("causal", True) else s * l
    return per_head * p["batch"] * p["heads"]


def cost(p):
    """Work of a point in the unit its time scales with (MACs, or bytes copied)."""
    if p["op"] == "attention":
        return attention_pairs(p) * p["head_dim"] + 2 * p["batch"] * p["kv_heads"] * p["context"] * p["head_dim"]
    rows = p["batch"] * p["seq"]
    return rows * p["dim"] * (p.get("out_dim", p["dim"]) if p["op"] != "embedding" else 1)


emit(
    library=f"torch {torch.__version__}",
    blas="mkl" if torch.backends.mkl.is_available() else "other",
    threads=torch.get_num_threads(),
)
rate = {}  # (op, precision) -> ms per unit of cost, from the last point timed


def measure(p):
    """The JSON answer for one point."""
    key = (p["op"], p["precision"])
    if p["precision"] not in DTYPES:
        # INT8 weight-only has no stock PyTorch CPU kernel to compare with.
        return dict(p, skipped=f"no PyTorch counterpart for {p['precision']}")
    if key in rate:
        predicted = rate[key] * cost(p) / 1e3
        if predicted > MAX_SECONDS:
            return dict(p, skipped=f"predicted {predicted:.1f} s a call, over the {MAX_SECONDS} s budget")
    dt = DTYPES[p["precision"]]
    if p["op"] == "attention":
        return attention(p, dt)
    rows, d = p["batch"] * p["seq"], p["dim"]
    n = p.get("out_dim", d)  # output columns of the projection
    if p["op"] == "embedding":
        table = torch.rand(p["vocab"], d, dtype=torch.float32).to(dt)
        ids = torch.randint(0, p["vocab"], (rows,), dtype=torch.int64)
        y = torch.empty(rows, d, dtype=dt)
        fresh = lambda: F.embedding(ids, table)
        out = lambda: torch.index_select(table, 0, ids, out=y)
    else:
        w = torch.rand(d, n, dtype=torch.float32).mul_(2).sub_(1).to(dt)
        y = torch.empty(rows, n, dtype=dt)
        if p["op"] == "matmul":
            x = torch.rand(rows, d, dtype=torch.float32).mul_(2).sub_(1).to(dt)
            fresh = lambda: x @ w
            out = lambda: torch.mm(x, w, out=y)
        else:  # embed-project: gather the rows, then project them
            table = torch.rand(p["vocab"], d, dtype=torch.float32).to(dt)
            ids = torch.randint(0, p["vocab"], (rows,), dtype=torch.int64)
            xg = torch.empty(rows, d, dtype=dt)
            fresh = lambda: F.embedding(ids, table) @ w
            out = lambda: torch.mm(torch.index_select(table, 0, ids, out=xg), w, out=y)
    t0 = time.perf_counter_ns()
    fresh()
    first_ms = (time.perf_counter_ns() - t0) / 1e6
    rate[key] = first_ms / cost(p)
    if first_ms / 1e3 > MAX_SECONDS:
        return dict(p, skipped=f"one call took {first_ms / 1e3:.1f} s, over the {MAX_SECONDS} s budget")
    fresh_ms, fresh_n = median_ms(fresh)
    out_ms, out_n = median_ms(out)
    rate[key] = min(fresh_ms, out_ms) / cost(p)
    return dict(p, fresh_p50_ms=fresh_ms, fresh_samples=fresh_n, out_p50_ms=out_ms, out_samples=out_n)


def attention(p, dt):
    """F.scaled_dot_product_attention on the point's shapes (GQA through
    enable_gqa; a cached prefix through an explicit bottom-right causal mask,
    since is_causal aligns the mask top-left). SDPA has no out= form: only
    the fresh call is timed."""
    if p.get("kv_precision", "same") != "same":
        return dict(p, skipped=f"no PyTorch counterpart for a {p['kv_precision']} KV cache")
    key = (p["op"], p["precision"])
    if key in rate:
        predicted = rate[key] * cost(p) / 1e3
        if predicted > MAX_SECONDS:
            return dict(p, skipped=f"predicted {predicted:.1f} s a call, over the {MAX_SECONDS} s budget")
    b, s, l, h, g, d = (p[k] for k in ("batch", "seq", "context", "heads", "kv_heads", "head_dim"))
    q = torch.randn(b, h, s, d, dtype=torch.float32).to(dt)
    k = torch.randn(b, g, l, d, dtype=torch.float32).to(dt)
    v = torch.randn(b, g, l, d, dtype=torch.float32).to(dt)
    causal = p.get("causal", True)
    kw = dict(enable_gqa=g != h)
    if causal and s == l:
        kw["is_causal"] = True
    elif causal and s > 1:
        # Query i sits at position l - s + i and sees keys 0 ..= l - s + i.
        kw["attn_mask"] = torch.ones(s, l, dtype=torch.bool).tril(diagonal=l - s)
    fresh = lambda: F.scaled_dot_product_attention(q, k, v, **kw)
    t0 = time.perf_counter_ns()
    fresh()
    first_ms = (time.perf_counter_ns() - t0) / 1e6
    rate[key] = first_ms / cost(p)
    if first_ms / 1e3 > MAX_SECONDS:
        return dict(p, skipped=f"one call took {first_ms / 1e3:.1f} s, over the {MAX_SECONDS} s budget")
    fresh_ms, fresh_n = median_ms(fresh)
    rate[key] = fresh_ms / cost(p)
    return dict(p, fresh_p50_ms=fresh_ms, fresh_samples=fresh_n)


for line in sys.stdin:
    if line.strip():
        emit(**measure(json.loads(line)))

//! Attention on the GPU: the plan (the path — fused flash kernel for a
//! prefill, split-K decode for a few queries, or the materialised three
//! passes — the context splits, and sequences grouped into blocks whose
//! buffers each fit a binding), the runner's program, and the record's
//! `kernel`.

use std::time::Instant;

use bytemuck::{Pod, Zeroable};

use super::inputs::Qkv;
use super::kernels::{binding, flash_tile, Kernel};
use super::kv::{activation_precision, encode as encode_kv, KvFormat};
use super::params::{Params, NAME};
use super::reference::Attention;
use crate::backend::gpu::device::GpuDevice;
use crate::backend::gpu::runner::{
    buffer_bytes, fold_grid, Buffer, Dispatch, Fill, OutputRows, Program,
};
use crate::backend::gpu::storage::{encode, StorageMode};
use crate::error::{LabError, Result};
use crate::ops::op::Inputs;
use crate::precision::Precision;
use crate::prepared_op::{Accumulation, OneTimeCosts, PreparedOp};

/// Queries per sequence up to which the split-K decode kernel runs (one
/// workgroup per query row); past it the fused kernel (64 queries a
/// workgroup).
pub const DECODE_MAX_SEQ: u32 = 16;
/// Workgroups the decode split aims for: enough to fill a large GPU's
/// compute units several times over at batch 1.
const DECODE_TARGET_GROUPS: u64 = 1024;
/// Fewest keys a context split holds.
const MIN_SPLIT_KEYS: u32 = 256;

/// The uniform parameters (`Params` in `shaders/attention/common.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
struct AttentionParams {
    seq: u32,
    context: u32,
    heads: u32,
    kv_heads: u32,
    group: u32,
    prefix: u32,
    causal: u32,
    ldo: u32,
    scale: f32,
    splits: u32,
    split_len: u32,
    groups_x: u32,
    rows: u32,
    batch: u32,
    dim: u32,
    _pad: u32,
}

/// Which kernels run a point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// The fused kernel.
    Flash,
    /// Split-K decode and the merge of its splits.
    Decode,
    /// QK^T, softmax and PV with the scores in memory.
    Materialized,
}

/// Everything about how one GPU attention runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// How Q and the output are stored.
    pub mode: StorageMode,
    /// How the cache is stored.
    pub format: KvFormat,
    /// The kernels.
    pub path: Path,
    /// Context splits per query row (decode).
    pub splits: u32,
    /// Keys per split.
    pub split_len: u32,
    /// Sequences per block of buffers.
    pub block: u32,
    /// Output row stride.
    pub ldo: u32,
}

/// The context splits of a decode over `rows` query rows and `context` keys:
/// as many as bring the workgroups to [`DECODE_TARGET_GROUPS`], each of at
/// least [`MIN_SPLIT_KEYS`] keys and a whole number of 64-key tiles.
pub fn decode_splits(rows: u64, context: u32) -> (u32, u32) {
    let most = context.div_ceil(MIN_SPLIT_KEYS).max(1);
    let want = DECODE_TARGET_GROUPS
        .div_ceil(rows.max(1))
        .clamp(1, most as u64) as u32;
    let split_len = context.div_ceil(want).div_ceil(64) * 64;
    (context.div_ceil(split_len), split_len)
}

/// Decides how `p` runs on `gpu` in `precision`, before any buffer exists.
///
/// On wgpu's GL backend the fused kernel is not used: building its pipeline
/// took llvmpipe's GL compiler 75 to 105 s (Vulkan on the same llvmpipe:
/// under 0.5 s; measured 2026-12-08 with `MESA_SHADER_CACHE_DISABLE=true`),
/// so there every query count runs the split kernel, one query row a
/// workgroup, and the record's `kernel` says so.
pub fn plan(gpu: &GpuDevice, p: &Params, precision: Precision) -> Result<Plan> {
    let fused = gpu.ctx.adapter.get_info().backend != wgpu::Backend::Gl;
    plan_for(
        gpu.storage_mode(activation_precision(precision)),
        gpu.binding_limit(),
        p,
        precision,
        fused,
    )
}

fn plan_for(
    mode: StorageMode,
    limit: u64,
    p: &Params,
    precision: Precision,
    fused: bool,
) -> Result<Plan> {
    let format = p.kv_precision.format(precision);
    let path = if p.materialized {
        Path::Materialized
    } else if p.seq <= DECODE_MAX_SEQ || !fused {
        Path::Decode
    } else {
        Path::Flash
    };
    let (splits, split_len) = if path == Path::Decode {
        decode_splits(p.query_rows(), p.context)
    } else {
        (1, p.context)
    };
    let (s, l, h, g, d) = (
        p.seq as u64,
        p.context as u64,
        p.heads as u64,
        p.kv_heads as u64,
        p.head_dim as u64,
    );
    let ldo = mode.padded_stride(p.head_dim);
    // Bytes of each buffer per sequence: each must fit a binding.
    let mut per_seq = vec![
        ("queries", buffer_bytes(mode, s * h * d)),
        ("output", buffer_bytes(mode, s * h * ldo as u64)),
        ("K (or V) cache", format.bytes(1, g, l, d).div_ceil(4) * 4),
    ];
    match path {
        Path::Materialized => per_seq.push(("scores", h * s * l * 4)),
        Path::Decode => per_seq.push(("split partials", s * h * splits as u64 * (d + 2) * 4)),
        Path::Flash => {}
    }
    let mut block = p.batch as u64;
    for (what, bytes) in per_seq {
        if bytes > limit {
            return Err(LabError::invalid(
                "shape",
                &p.label(),
                &format!(
                    "one sequence's {what} takes {bytes} bytes, over the device's {limit}-byte binding limit"
                ),
            ));
        }
        block = block.min(limit / bytes);
    }
    Ok(Plan {
        mode,
        format,
        path,
        splits,
        split_len,
        block: block.max(1) as u32,
        ldo,
    })
}

/// The record's `kernel` of `plan`.
pub fn kernel_label(plan: &Plan) -> String {
    let path = match plan.path {
        Path::Flash => "wgsl-flash".to_string(),
        Path::Decode => format!("wgsl-decode-split{}", plan.splits),
        Path::Materialized => "wgsl-materialized".to_string(),
    };
    format!("{path} q-{} kv-{}", plan.mode.name(), plan.format.name())
}

/// The runner's program of `p` as `plan` says: per block of sequences its
/// queries (a request's input), K and V (the model's data, with scales when
/// quantised), output and scratch, and the dispatches of the path.
fn program<'a>(
    gpu: &'a GpuDevice,
    p: &Params,
    plan: &Plan,
    inputs: &'a Inputs,
) -> Result<Program<'a>> {
    let qkv: &'a Qkv = inputs.get();
    let (mode, format) = (plan.mode, plan.format);
    let kernels: &[Kernel] = match plan.path {
        Path::Flash => &[Kernel::Flash],
        Path::Decode => &[Kernel::Decode, Kernel::Combine],
        Path::Materialized => &[Kernel::Scores, Kernel::Softmax, Kernel::Values],
    };
    let mut pipelines = Vec::new();
    let mut compile_ns = 0;
    for k in kernels {
        let c = gpu.ctx.pipeline(
            k.name(),
            k.source(mode, format, p.head_dim),
            &[],
            gpu.options.shader_checks,
        )?;
        compile_ns += c.compile_ns;
        pipelines.push(c.pipeline);
    }
    let mut program = Program {
        label: NAME,
        kernel: kernel_label(plan),
        pipelines,
        buffers: Vec::new(),
        dispatches: Vec::new(),
        accumulation: Accumulation::F32,
        bounds_guard: gpu.options.bounds_guard,
        costs: OneTimeCosts {
            planning_ns: 0,
            compile_ns,
        },
    };
    let (s, l, h, g, d) = (
        p.seq as usize,
        p.context as usize,
        p.heads as usize,
        p.kv_heads as usize,
        p.head_dim as usize,
    );
    let max_groups = gpu.max_groups();
    let mut first = 0usize;
    while first < p.batch as usize {
        let n = (plan.block as usize).min(p.batch as usize - first);
        let q_range = first * s * h * d..(first + n) * s * h * d;
        let kv_range = first * g * l * d..(first + n) * g * l * d;
        let push = |program: &mut Program<'a>, role, size, fill| {
            program.buffers.push(Buffer { role, size, fill });
            program.buffers.len() - 1
        };
        let qb = push(
            &mut program,
            "q",
            buffer_bytes(mode, q_range.len() as u64),
            Fill::Request(Box::new(move || encode(mode, &qkv.q[q_range.clone()]))),
        );
        let cache = |program: &mut Program<'a>, data: &'a [f32]| {
            let r = kv_range.clone();
            let elems = r.len() as u64;
            let bytes = if format.quantised() {
                (elems * format.element_bytes()).div_ceil(4) * 4
            } else {
                buffer_bytes(mode, elems)
            };
            // A quantised cache's scales come out of the same pass as its
            // values: the values' fill keeps them for the scales' fill (which
            // quantises again only if it runs first).
            let scales_of = std::rc::Rc::new(std::cell::RefCell::new(None::<Vec<f32>>));
            let (r2, kept) = (r.clone(), scales_of.clone());
            let buf = push(
                program,
                "kv-cache",
                bytes,
                Fill::Model(Box::new(move || {
                    if format.quantised() {
                        let (values, scales) = encode_kv(format, &data[r2.clone()], d, l * d);
                        *kept.borrow_mut() = Some(scales);
                        values
                    } else {
                        encode(mode, &data[r2.clone()])
                    }
                })),
            );
            let scales = format.quantised().then(|| {
                let count = if format == KvFormat::Int8 {
                    n * g * l
                } else {
                    n * g
                };
                push(
                    program,
                    "kv-cache",
                    count as u64 * 4,
                    Fill::Model(Box::new(move || {
                        let scales = scales_of
                            .borrow_mut()
                            .take()
                            .unwrap_or_else(|| encode_kv(format, &data[r.clone()], d, l * d).1);
                        bytemuck::cast_slice(&scales).to_vec()
                    })),
                )
            });
            (buf, scales)
        };
        let (kb, ks) = cache(&mut program, &qkv.k);
        let (vb, vs) = cache(&mut program, &qkv.v);
        let rows = (n * s * h) as u32;
        let ob = push(
            &mut program,
            "output",
            buffer_bytes(mode, rows as u64 * plan.ldo as u64),
            Fill::Output(OutputRows {
                rows,
                cols: p.head_dim,
                stride: plan.ldo,
                mode,
                guard_tail: buffer_bytes(mode, plan.ldo as u64).max(16),
            }),
        );
        let scratch = match plan.path {
            Path::Flash => None,
            Path::Decode => Some(push(
                &mut program,
                "workspace",
                rows as u64 * plan.splits as u64 * (d as u64 + 2) * 4,
                Fill::Scratch,
            )),
            Path::Materialized => Some(push(
                &mut program,
                "scores",
                (n * h * s * l) as u64 * 4,
                Fill::Scratch,
            )),
        };
        let params = AttentionParams {
            seq: p.seq,
            context: p.context,
            heads: p.heads,
            kv_heads: p.kv_heads,
            group: p.group(),
            prefix: p.prefix(),
            causal: p.causal as u32,
            ldo: plan.ldo,
            scale: Attention::scale(p.head_dim),
            splits: plan.splits,
            split_len: plan.split_len,
            groups_x: 0,
            rows,
            batch: n as u32,
            dim: p.head_dim,
            _pad: 0,
        };
        let buffer_of = |b: u32| match b {
            binding::Q => qb,
            binding::K => kb,
            binding::V => vb,
            binding::K_SCALE => ks.expect("scales of a quantised cache"),
            binding::V_SCALE => vs.expect("scales of a quantised cache"),
            binding::OUT => ob,
            _ => scratch.expect("scratch of the path"),
        };
        let (n64, s64, l64, h64, d64) = (n as u64, s as u64, l as u64, h as u64, d as u64);
        for (i, k) in kernels.iter().enumerate() {
            let groups = match k {
                Kernel::Flash => n64 * h64 * s64.div_ceil(flash_tile(p.head_dim).1 as u64),
                Kernel::Decode => rows as u64 * plan.splits as u64,
                Kernel::Combine | Kernel::Softmax => rows as u64,
                Kernel::Scores => n64 * h64 * s64.div_ceil(16) * l64.div_ceil(16),
                Kernel::Values => n64 * h64 * s64.div_ceil(16) * d64.div_ceil(32),
            };
            let grid = fold_grid(groups, max_groups);
            let bindings = k
                .bindings(format)
                .into_iter()
                .map(|b| (b, buffer_of(b)))
                .collect();
            program.dispatches.push(Dispatch::new(
                i,
                bindings,
                binding::PARAMS,
                AttentionParams {
                    groups_x: grid[0],
                    ..params
                },
                grid,
            ));
        }
        first += n;
    }
    Ok(program)
}

/// The attention `p` planned, built and loaded on `gpu`.
pub fn prepare<'a>(
    gpu: &'a GpuDevice,
    p: &Params,
    precision: Precision,
    inputs: &'a Inputs,
) -> Result<Box<dyn PreparedOp + 'a>> {
    let t = Instant::now();
    let plan = plan(gpu, p, precision)?;
    let planning_ns = t.elapsed().as_nanos() as u64;
    let mut program = program(gpu, p, &plan, inputs)?;
    program.costs.planning_ns = planning_ns;
    let what = format!("preparing {NAME} {}", kernel_label(&plan));
    Ok(Box::new(gpu.build(&what, program)?))
}

/// The kernel that runs `p` on `gpu` (its plan's description; a plan that
/// cannot be made names the path it would have taken).
pub fn kernel_name(gpu: &GpuDevice, p: &Params, precision: Precision) -> String {
    match plan(gpu, p, precision) {
        Ok(plan) => kernel_label(&plan),
        Err(_) => format!("wgsl {}", p.label()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::attention::kv::KvPrecision;

    fn llama(batch: u32, seq: u32, context: u32) -> Params {
        Params {
            batch,
            seq,
            context,
            heads: 32,
            kv_heads: 8,
            head_dim: 128,
            causal: true,
            kv_precision: KvPrecision::Same,
            materialized: false,
        }
    }

    #[test]
    fn decode_splits_fill_the_device_in_whole_tiles() {
        // Batch 1, 32 heads: 32 rows; 32 splits of 128 keys would be too
        // small, so 16 of 256.
        assert_eq!(decode_splits(32, 4096), (16, 256));
        // Batch 32: 1024 rows fill the device without a split.
        assert_eq!(decode_splits(1024, 4096), (1, 4096));
        // An odd context: whole 64-key tiles, every key in some split.
        let (n, len) = decode_splits(8, 1000);
        assert!(
            len % 64 == 0 && n * len >= 1000 && (n - 1) * len < 1000,
            "{n} {len}"
        );
    }

    #[test]
    fn paths_and_blocks_follow_the_shape_and_the_binding_limit() {
        let mb = 1u64 << 20;
        let plan = plan_for(
            StorageMode::F16,
            128 * mb,
            &llama(32, 1, 32768),
            Precision::F16,
            true,
        )
        .unwrap();
        assert_eq!(plan.path, Path::Decode);
        // 8 x 32768 x 128 x 2 bytes = 64 MiB of K a sequence: two a block.
        assert_eq!(plan.block, 2);
        let plan = plan_for(
            StorageMode::F32,
            128 * mb,
            &llama(1, 2048, 2048),
            Precision::F32,
            true,
        )
        .unwrap();
        assert_eq!((plan.path, plan.block), (Path::Flash, 1));
        // Without the fused kernel (GL), a prefill runs the split kernel.
        let gl = plan_for(
            StorageMode::F32,
            128 * mb,
            &llama(1, 2048, 2048),
            Precision::F32,
            false,
        );
        assert_eq!(gl.unwrap().path, Path::Decode);
        let m = Params {
            materialized: true,
            ..llama(1, 2048, 2048)
        };
        // 32 x 2048 x 2048 x 4 = 512 MiB of scores for one sequence.
        let err = plan_for(StorageMode::F32, 128 * mb, &m, Precision::F32, true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("scores") && err.contains("134217728"), "{err}");
        assert_eq!(
            kernel_label(
                &plan_for(
                    StorageMode::PackedF16,
                    128 * mb,
                    &llama(1, 1, 4096),
                    Precision::Int8,
                    true,
                )
                .unwrap()
            ),
            "wgsl-decode-split16 q-f16-packed kv-int8"
        );
    }
}

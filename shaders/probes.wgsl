// Ceiling probes: the device's own practical peaks, against which every record's
// GB/s and GFLOP/s are read.
//
// copy: dst = src in vec4 words with a grid-stride loop — the memory bandwidth an
//       op like the gather can at best reach (bytes moved = 2 x size).
// fma:  8 independent vec4 FMA chains per invocation (enough independent work to
//       hide FMA latency), `iters` deep; the result is written so the compiler
//       cannot drop the chains. FLOPs = invocations x iters x 8 x 4 x 2.

struct Params {
    words: u32,      // vec4 words to copy
    iters: u32,      // FMA chain depth
    stride: u32,     // invocations in the whole grid (for the grid-stride loop)
    _pad: u32,
}
@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(256, 1, 1)
fn copy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let start = gid.y * groups.x * 256u + gid.x;
    for (var i = start; i < p.words; i += p.stride) {
        dst[i] = src[i];
    }
}

@compute @workgroup_size(256, 1, 1)
fn fma_chain(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let id = gid.y * groups.x * 256u + gid.x;
    // Seeds from the input keep the values unknown to the compiler.
    let s = src[id % p.words];
    var a0 = s; var a1 = s + 1.0; var a2 = s + 2.0; var a3 = s + 3.0;
    var a4 = s + 4.0; var a5 = s + 5.0; var a6 = s + 6.0; var a7 = s + 7.0;
    let m = vec4<f32>(0.999999);
    let c = vec4<f32>(1e-7);
    for (var i = 0u; i < p.iters; i++) {
        a0 = fma(a0, m, c); a1 = fma(a1, m, c); a2 = fma(a2, m, c); a3 = fma(a3, m, c);
        a4 = fma(a4, m, c); a5 = fma(a5, m, c); a6 = fma(a6, m, c); a7 = fma(a7, m, c);
    }
    dst[id % p.words] = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
}

//! The matmul's kernels: the configurations the autotuner chooses among
//! ([`MatmulVariant`]: a family and its tile sizes) and their WGSL, assembled
//! from `shaders/matmul/` with the storage accessors of one storage mode, so
//! each kernel is written once for f32, f16, packed f16 and bf16 and INT8
//! weights. The bounds guard's checked loads ([`with_bounds_guard`]) are here
//! too: which loads to check is the kernel's to know.

use crate::backend::gpu::storage::{read_accessor4, write_accessor, StorageMode};

/// Declares the INT8 weight `b` at binding 1 (int8 values four to a word,
/// then one f32 scale per column of the block), `load_b`/`load4_b` returning
/// the integer values as f32, and the `epilogue` that multiplies each
/// column's sum by its scale. `extractBits` on an i32 sign-extends.
fn int8_weight_accessor(vec4: bool) -> String {
    let four = if vec4 {
        "let w = bitcast<i32>(b[i >> 2u]); return vec4<f32>(f32(extractBits(w, 0u, 8u)), f32(extractBits(w, 8u, 8u)), f32(extractBits(w, 16u, 8u)), f32(extractBits(w, 24u, 8u)));"
    } else {
        "return vec4<f32>(load_b(i), load_b(i + 1u), load_b(i + 2u), load_b(i + 3u));"
    };
    format!(
        "@group(0) @binding(1) var<storage, read> b: array<u32>;\n\
         fn load_b(i: u32) -> f32 {{ return f32(extractBits(bitcast<i32>(b[i >> 2u]), (i & 3u) * 8u, 8u)); }}\n\
         fn load4_b(i: u32) -> vec4<f32> {{ {four} }}\n\
         fn col_scale(c: u32) -> f32 {{ let kn = p.k * p.n; let at = kn / 4u + select(0u, 1u, (kn & 3u) != 0u) + min(c, p.n - 1u); return bitcast<f32>(b[at]); }}\n\
         fn epilogue(col: u32, v: vec4<f32>) -> vec4<f32> {{ return v * vec4<f32>(col_scale(col), col_scale(col + 1u), col_scale(col + 2u), col_scale(col + 3u)); }}\n"
    )
}

/// The matmul kernel families.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatmulFamily {
    /// Workgroup tiles in shared memory, register-blocked (`shaders/matmul/tiled.wgsl`).
    Tiled,
    /// No shared memory or barriers, register-blocked (`shaders/matmul/direct.wgsl`).
    Direct,
    /// Rows of a shared across a subgroup by shuffles (`shaders/matmul/subgroup.wgsl`; SUBGROUP).
    Subgroup,
    /// Cooperative f16 matrices (16x16, or 8x8 where the adapter offers only
    /// those), f32 accumulation, several subgroups per workgroup
    /// (`shaders/matmul/coop.wgsl`; EXPERIMENTAL_COOPERATIVE_MATRIX, SHADER_F16, SUBGROUP).
    Coop,
}

/// One matmul configuration: a kernel family and its tile sizes. The register
/// block (`tm` x `tn`) and the accumulator type are compile-time constants of
/// the module; the workgroup shape and `bk` are pipeline-overridable constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MatmulVariant {
    /// The kernel.
    pub family: MatmulFamily,
    /// Workgroup size along columns (along the only dimension for subgroup;
    /// for coop, the width of one subgroup).
    pub wg_x: u32,
    /// Workgroup size along rows.
    pub wg_y: u32,
    /// Rows of y one invocation owns (a multiple of 4 for the tiled family;
    /// for coop, rows one subgroup owns).
    pub tm: u32,
    /// Columns of y one invocation owns (a multiple of 4; for coop, columns
    /// one subgroup owns).
    pub tn: u32,
    /// Depth of one K slice in shared memory (tiled and coop families).
    pub bk: u32,
    /// Coop: the workgroup's subgroups, rows x columns of them ((1, 1) elsewhere).
    pub subgroups: (u32, u32),
    /// Coop: the edge of one cooperative fragment, 16 or 8 as the adapter
    /// offers (0 elsewhere).
    pub frag: u32,
    /// Accumulate in f16 instead of f32 (f16 storage only; a labelled choice
    /// with its own, looser tolerance).
    pub f16_acc: bool,
    /// Coop: workgroups whose whole tile lies inside y load their fragments
    /// straight from a and b in memory, with no staging or barriers, over
    /// every whole K slice (edge tiles and the K tail are staged as usual).
    pub global_loads: bool,
}

impl MatmulVariant {
    const fn new(family: MatmulFamily, wg: (u32, u32), block: (u32, u32), bk: u32) -> Self {
        MatmulVariant {
            family,
            wg_x: wg.0,
            wg_y: wg.1,
            tm: block.0,
            tn: block.1,
            bk,
            subgroups: (1, 1),
            frag: 0,
            f16_acc: false,
            global_loads: false,
        }
    }

    /// A coop configuration: a `tile` of y per workgroup, `bk` deep slices,
    /// `subgroups` (rows x columns of them) sharing the tile; 16x16 fragments
    /// until [`Self::for_adapter`] fits them to the adapter.
    const fn coop(tile: (u32, u32), bk: u32, subgroups: (u32, u32)) -> Self {
        MatmulVariant {
            family: MatmulFamily::Coop,
            wg_x: 32,
            wg_y: 1,
            tm: tile.0 / subgroups.0,
            tn: tile.1 / subgroups.1,
            bk,
            subgroups,
            frag: 16,
            f16_acc: false,
            global_loads: false,
        }
    }

    /// A coop configuration whose interior tiles load fragments straight
    /// from memory (see [`Self::global_loads`]).
    const fn coop_direct(tile: (u32, u32), bk: u32, subgroups: (u32, u32)) -> Self {
        MatmulVariant {
            global_loads: true,
            ..Self::coop(tile, bk, subgroups)
        }
    }

    /// The 64x64x16 tiled kernel with 4x4 blocks (the default when not tuning).
    pub const TILED: MatmulVariant = Self::new(MatmulFamily::Tiled, (16, 16), (4, 4), 16);
    /// The barrier-free kernel with 4x4 blocks.
    pub const DIRECT: MatmulVariant = Self::new(MatmulFamily::Direct, (8, 8), (4, 4), 0);

    /// The configurations the autotuner may try, before device filtering: tiled
    /// 32x32 to 128x128 tiles with 4x4 to 8x8 blocks, direct 4x4 and 4x8, the
    /// subgroup kernel, and the cooperative-matrix kernel from one subgroup on
    /// a 32x32 tile to eight on 128x128, staged through workgroup memory or
    /// (`-direct`) loading interior tiles' fragments from memory. Workgroup sizes of the subgroup and
    /// coop kernels, and the coop fragment, are set per adapter (see
    /// [`Self::for_adapter`]).
    pub const CANDIDATES: [MatmulVariant; 17] = [
        Self::TILED,
        Self::new(MatmulFamily::Tiled, (8, 8), (4, 4), 16),
        Self::new(MatmulFamily::Tiled, (16, 16), (8, 4), 16),
        Self::new(MatmulFamily::Tiled, (16, 16), (8, 8), 8),
        Self::new(MatmulFamily::Tiled, (16, 16), (8, 8), 16),
        Self::new(MatmulFamily::Tiled, (8, 8), (8, 8), 16),
        Self::DIRECT,
        Self::new(MatmulFamily::Direct, (8, 8), (4, 8), 0),
        Self::new(MatmulFamily::Subgroup, (64, 1), (4, 4), 0),
        Self::coop((64, 64), 32, (2, 2)),
        Self::coop((128, 128), 32, (2, 2)),
        Self::coop((128, 128), 32, (2, 4)),
        Self::coop((128, 64), 32, (2, 2)),
        Self::coop((32, 32), 16, (1, 1)),
        Self::coop_direct((64, 64), 32, (2, 2)),
        Self::coop_direct((128, 128), 32, (2, 2)),
        Self::coop_direct((128, 128), 32, (2, 4)),
    ];

    /// This configuration with f16 accumulation.
    pub fn with_f16_acc(self, on: bool) -> Self {
        MatmulVariant {
            f16_acc: on,
            ..self
        }
    }

    /// A short name for records, e.g. `tiled-64x64x16-4x4`, `direct-4x8`,
    /// `subgroup-4x4`, `coop-128x128x32-2x4` (tile, slice depth, subgroups;
    /// `-direct` where interior tiles load from memory); `-acc16` marks f16
    /// accumulation.
    pub fn name(self) -> String {
        let (bm, bn) = self.tile();
        let base = match self.family {
            MatmulFamily::Tiled => format!("tiled-{bm}x{bn}x{}-{}x{}", self.bk, self.tm, self.tn),
            MatmulFamily::Direct => format!("direct-{}x{}", self.tm, self.tn),
            MatmulFamily::Subgroup => format!("subgroup-{}x{}", self.tm, self.tn),
            MatmulFamily::Coop => format!(
                "coop-{bm}x{bn}x{}-{}x{}{}",
                self.bk,
                self.subgroups.0,
                self.subgroups.1,
                if self.global_loads { "-direct" } else { "" }
            ),
        };
        if self.f16_acc {
            format!("{base}-acc16")
        } else {
            base
        }
    }

    /// Finds a candidate by its name (as [`Self::name`] gives it, without
    /// `-acc16`), or `tiled` / `direct` for the defaults of those families.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "tiled" => Some(Self::TILED),
            "direct" => Some(Self::DIRECT),
            "subgroup" => Self::first_of(MatmulFamily::Subgroup),
            "coop" => Self::first_of(MatmulFamily::Coop),
            _ => Self::CANDIDATES.into_iter().find(|v| v.name() == name),
        }
    }

    /// The first candidate of `family`.
    fn first_of(family: MatmulFamily) -> Option<Self> {
        Self::CANDIDATES.into_iter().find(|v| v.family == family)
    }

    /// Names [`Self::parse`] accepts.
    pub fn names() -> Vec<String> {
        let mut names: Vec<String> = ["tiled", "direct", "subgroup", "coop"]
            .map(String::from)
            .to_vec();
        names.extend(Self::CANDIDATES.iter().map(|v| v.name()));
        names
    }

    /// This configuration fitted to an adapter whose subgroups are
    /// `subgroup_max` wide and whose cooperative fragments are `coop_frag`
    /// wide (16 or 8): the subgroup kernel needs whole subgroups, the coop
    /// kernel its grid of subgroups and fragments the adapter multiplies.
    pub fn for_adapter(self, subgroup_max: u32, coop_frag: u32) -> Self {
        match self.family {
            MatmulFamily::Subgroup => MatmulVariant {
                wg_x: self.wg_x.max(subgroup_max),
                ..self
            },
            MatmulFamily::Coop => MatmulVariant {
                wg_x: subgroup_max.max(1),
                frag: coop_frag,
                ..self
            },
            _ => self,
        }
    }

    /// Invocations per workgroup.
    pub fn invocations(self) -> u32 {
        self.wg_x * self.wg_y * self.subgroups.0 * self.subgroups.1
    }

    /// Bytes of workgroup memory the kernel declares.
    pub fn workgroup_bytes(self) -> u32 {
        let (bm, bn) = self.tile();
        let acc = if self.f16_acc { 2 } else { 4 };
        match self.family {
            MatmulFamily::Tiled => (bm + bn) * self.bk * acc,
            // Padded a and b slices (f16), one f32 fragment per subgroup.
            MatmulFamily::Coop => {
                let (sgm, sgn) = self.subgroups;
                (bm * (self.bk + 8) + self.bk * (bn + 8)) * 2 + sgm * sgn * self.frag.pow(2) * 4
            }
            _ => 0,
        }
    }

    /// Rows and columns of y one workgroup covers.
    pub fn tile(self) -> (u32, u32) {
        match self.family {
            MatmulFamily::Coop => (self.subgroups.0 * self.tm, self.subgroups.1 * self.tn),
            _ => (self.wg_y * self.tm, self.wg_x * self.tn),
        }
    }

    /// The pipeline-overridable constants to build the pipeline with.
    pub fn constants(self) -> Vec<(&'static str, f64)> {
        let (x, y, bk) = (self.wg_x as f64, self.wg_y as f64, self.bk as f64);
        match self.family {
            MatmulFamily::Tiled => vec![("WG_X", x), ("WG_Y", y), ("BK", bk)],
            MatmulFamily::Direct => vec![("WG_X", x), ("WG_Y", y)],
            MatmulFamily::Subgroup => vec![("WG_X", x)],
            MatmulFamily::Coop => vec![("WG", self.invocations() as f64)],
        }
    }

    /// The device features the kernel needs beyond the storage mode's.
    pub fn required_features(self) -> wgpu::Features {
        let acc = if self.f16_acc {
            wgpu::Features::SHADER_F16
        } else {
            wgpu::Features::empty()
        };
        acc | match self.family {
            MatmulFamily::Subgroup => wgpu::Features::SUBGROUP,
            MatmulFamily::Coop => {
                wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX
                    | wgpu::Features::SHADER_F16
                    | wgpu::Features::SUBGROUP
            }
            _ => wgpu::Features::empty(),
        }
    }

    /// Whether a matmul with inner size `k`, output width `n` and row stride
    /// of a `lda` reads its rows 4 elements at a time (one 16-byte f32 word or
    /// one 8-byte f16 word): every row a multiple of 4 elements, so no word
    /// straddles an edge.
    pub fn vec4_loads(self, k: u32, n: u32, lda: u32) -> bool {
        // Cooperative loads from memory need a and b as arrays of f16 (WGSL
        // has no pointer to a vector's element).
        !self.global_loads && k.is_multiple_of(4) && n.is_multiple_of(4) && lda.is_multiple_of(4)
    }

    /// The WGSL for `mode`; with `vec4_loads` (see [`Self::vec4_loads`]) a and
    /// b are read as 4-element words.
    pub fn source(self, mode: StorageMode, vec4_loads: bool) -> String {
        let coop;
        let body: &str = match self.family {
            MatmulFamily::Tiled => include_str!("../../../shaders/matmul/tiled.wgsl"),
            MatmulFamily::Direct => include_str!("../../../shaders/matmul/direct.wgsl"),
            MatmulFamily::Subgroup => include_str!("../../../shaders/matmul/subgroup.wgsl"),
            MatmulFamily::Coop => {
                coop = self.coop_body();
                &coop
            }
        };
        let mut enables = String::new();
        if mode.activation() == StorageMode::F16
            || self.f16_acc
            || self.family == MatmulFamily::Coop
        {
            enables.push_str("enable f16;\n");
        }
        if self.family == MatmulFamily::Coop {
            enables.push_str("enable wgpu_cooperative_matrix;\n");
        }
        let acc = if self.f16_acc { "f16" } else { "f32" };
        let b = if mode.int8_weight() {
            int8_weight_accessor(vec4_loads)
        } else {
            read_accessor4(mode, "b", 1, vec4_loads)
                + "fn epilogue(col: u32, v: vec4<f32>) -> vec4<f32> { return v; }\n"
        };
        format!(
            "{enables}alias acc_t = {acc};\nconst TM: u32 = {}u;\nconst TN: u32 = {}u;\nconst VEC4: bool = {vec4_loads};\n{}{}{}\n{}\n{body}",
            self.tm,
            self.tn,
            read_accessor4(mode, "a", 0, vec4_loads),
            b,
            write_accessor(mode, "y", 2),
            include_str!("../../../shaders/matmul/common.wgsl"),
        )
    }
}

impl MatmulVariant {
    /// `shaders/matmul/coop.wgsl` with its constants and its per-fragment code
    /// written out: accumulators `c_i_j`, the loads of `a_i` and `b_j` from
    /// the staged slices and their multiply-adds, the stores of each fragment.
    fn coop_body(self) -> String {
        let f = self.frag;
        let (sgm, sgn) = self.subgroups;
        let (fm, fn_) = (self.tm / f, self.tn / f);
        let ty = |elem: &str, role: &str| format!("coop_mat{f}x{f}<{elem}, {role}>");
        let pairs: Vec<(u32, u32)> = (0..fm)
            .flat_map(|i| (0..fn_).map(move |j| (i, j)))
            .collect();
        let mut decl = String::new();
        let mut store = String::new();
        for &(i, j) in &pairs {
            decl += &format!("var c_{i}_{j} = {}();\n", ty("f32", "C"));
            store += &format!(
                "workgroupBarrier();\n\
                 coopStoreT(c_{i}_{j}, &sc[sg * F * F], F);\n\
                 workgroupBarrier();\n\
                 write_fragment(sg, lane, width, row0 + fr + {i}u * F, col0 + fc + {j}u * F);\n"
            );
        }
        // One F-deep step: each a_i and b_j fragment loaded from the element
        // `a_at(i)` / `b_at(j)` names (rows `lda` / `ldb` apart), then every
        // multiply-add.
        let step =
            |a_at: &dyn Fn(u32) -> String, lda: &str, b_at: &dyn Fn(u32) -> String, ldb: &str| {
                let mut code = String::new();
                for i in 0..fm {
                    code += &format!(
                        "let a_{i} = coopLoadT<{}>(&{}, {lda});\n",
                        ty("f16", "A"),
                        a_at(i)
                    );
                }
                for j in 0..fn_ {
                    code += &format!(
                        "let b_{j} = coopLoadT<{}>(&{}, {ldb});\n",
                        ty("f16", "B"),
                        b_at(j)
                    );
                }
                for &(i, j) in &pairs {
                    code += &format!("c_{i}_{j} = coopMultiplyAdd(a_{i}, b_{j}, c_{i}_{j});\n");
                }
                code
            };
        // From the staged slices, and (interior tiles) from a and b themselves.
        let mma = step(
            &|i| format!("sa[(fr + {i}u * F) * LDSA + kk]"),
            "LDSA",
            &|j| format!("sb[kk * LDSB + fc + {j}u * F]"),
            "LDSB",
        );
        let mma_global = step(
            &|i| format!("a[(row0 + fr + {i}u * F) * p.lda + k0]"),
            "p.lda",
            &|j| format!("b[k0 * p.n + col0 + fc + {j}u * F]"),
            "p.n",
        );
        let consts = format!(
            "const F: u32 = {f}u;\nconst SGM: u32 = {sgm}u;\nconst SGN: u32 = {sgn}u;\n\
             const FM: u32 = {fm}u;\nconst FN: u32 = {fn_}u;\nconst BK: u32 = {}u;\n\
             const GLOBAL_LOADS: bool = {};\n",
            self.bk, self.global_loads
        );
        consts
            + &include_str!("../../../shaders/matmul/coop.wgsl")
                .replace("//@decl", &decl)
                .replace("//@mma_global", &mma_global)
                .replace("//@mma", &mma)
                .replace("//@store", &store)
    }
}

/// `source`, a matmul module from [`MatmulVariant::source`] for `mode`, with
/// its loads checked: `load_a`/`load4_a` against the `p.m` x `p.lda` input,
/// `load_b`/`load4_b` against the `p.k` x `p.n` weight block. An index past
/// either overwrites the last element of `y`'s binding, which the host fills
/// with `GUARD_SENTINEL` and checks (`GpuOptions::bounds_guard`):
/// our own GPU-assisted validation, since a device with robust buffer access
/// (wgpu asks for it) hides an out-of-range read from the validation layers.
pub fn with_bounds_guard(source: &str, mode: StorageMode) -> String {
    let zero = match mode.activation() {
        StorageMode::F32 => "0.0",
        StorageMode::F16 => "f16(0.0)",
        _ => "0u",
    };
    let mut s = source.to_string();
    for f in ["load_a", "load4_a", "load_b", "load4_b"] {
        s = s.replace(&format!("fn {f}("), &format!("fn {f}_unguarded("));
    }
    s.push_str(&format!(
        "\nfn guard_tripped() {{ y[arrayLength(&y) - 1u] = {zero}; }}\n\
         fn guard(last: u32, len: u32) {{ if (last >= len) {{ guard_tripped(); }} }}\n\
         fn load_a(i: u32) -> f32 {{ guard(i, p.m * p.lda); return load_a_unguarded(i); }}\n\
         fn load4_a(i: u32) -> vec4<f32> {{ guard(i + 3u, p.m * p.lda); return load4_a_unguarded(i); }}\n\
         fn load_b(i: u32) -> f32 {{ guard(i, p.k * p.n); return load_b_unguarded(i); }}\n\
         fn load4_b(i: u32) -> vec4<f32> {{ guard(i + 3u, p.k * p.n); return load4_b_unguarded(i); }}\n"
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::gpu::storage::validate_wgsl;

    /// Every coop configuration, on 8-, 32- and 64-wide subgroups with 16x16 or
    /// 8x8 fragments: each subgroup owns whole fragments, slices are whole
    /// fragments deep, the workgroup fits 1024 invocations and 32 KiB of
    /// workgroup memory (the smallest limit among desktop GPUs), and the name
    /// finds the configuration again.
    #[test]
    fn coop_configurations_tile_with_whole_fragments_inside_common_limits() {
        let coop: Vec<MatmulVariant> = MatmulVariant::CANDIDATES
            .into_iter()
            .filter(|v| v.family == MatmulFamily::Coop)
            .collect();
        assert!(coop.len() >= 4);
        for base in coop {
            for (width, frag) in [(32, 16), (64, 16), (8, 8), (32, 8)] {
                let v = base.for_adapter(width, frag);
                let (sgm, sgn) = v.subgroups;
                assert_eq!(v.tile(), (sgm * v.tm, sgn * v.tn), "{}", v.name());
                for edge in [v.tm, v.tn, v.bk] {
                    assert_eq!(edge % frag, 0, "{} with {frag}x{frag}", v.name());
                }
                assert_eq!(v.invocations(), width * sgm * sgn);
                assert!(v.invocations() <= 1024, "{}", v.name());
                assert!(v.workgroup_bytes() <= 32 << 10, "{}", v.name());
                let found = MatmulVariant::parse(&v.name()).unwrap();
                assert_eq!(found.for_adapter(width, frag), v);
            }
        }
    }

    /// Every variant, in every storage mode, on two adapters' subgroup widths
    /// and with f16 accumulation, with and without vec4 loads and with the
    /// bounds guard, must parse and validate with naga, without a device, and
    /// with its overrides resolved, compile to SPIR-V.
    #[test]
    fn every_variant_validates() {
        for mode in StorageMode::ALL {
            for v in MatmulVariant::CANDIDATES.iter().flat_map(|v| {
                [
                    v.for_adapter(32, 16),
                    v.for_adapter(8, 8),
                    v.with_f16_acc(true),
                ]
            }) {
                for vec4 in [false, true] {
                    let name = format!("{} vec4={vec4} {mode:?}", v.name());
                    let src = v.source(mode, vec4);
                    validate_wgsl(&name, &src, &v.constants());
                    if vec4 {
                        validate_wgsl(&name, &with_bounds_guard(&src, mode), &v.constants());
                    }
                }
            }
        }
    }
}

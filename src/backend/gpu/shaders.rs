//! Assembles the WGSL kernels in `shaders/` with the storage accessors for one
//! storage mode, so each kernel is written once for f32, f16 and packed f16.

use crate::workload::Precision;

/// How elements are stored in GPU buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StorageMode {
    /// `array<f32>`.
    F32,
    /// `array<f16>` (needs SHADER_F16).
    F16,
    /// f16 values two to an `array<u32>` word, through `unpack2x16float` /
    /// `pack2x16float`: FP16 storage on adapters without SHADER_F16.
    PackedF16,
    /// bf16 values two to an `array<u32>` word (WGSL has no bf16 type): a
    /// bf16 is the top half of an f32, so reading one is a shift and a
    /// bitcast; writing rounds to nearest even.
    PackedBf16,
    /// INT8 weights (W8A16): the weight's int8 values four to a `u32` word,
    /// followed by one f32 scale per column, dequantised in the kernel (the
    /// scale applied to each column's sum); everything else as [`Self::F16`].
    W8F16,
    /// INT8 weights as in [`Self::W8F16`]; everything else as [`Self::PackedF16`].
    W8PackedF16,
}

impl StorageMode {
    /// The mode for `precision` on a device with or without SHADER_F16.
    pub fn for_precision(precision: Precision, shader_f16: bool, force_packed: bool) -> Self {
        match precision {
            Precision::F32 => StorageMode::F32,
            Precision::F16 if shader_f16 && !force_packed => StorageMode::F16,
            Precision::F16 => StorageMode::PackedF16,
            Precision::Bf16 => StorageMode::PackedBf16,
            Precision::Int8 if shader_f16 && !force_packed => StorageMode::W8F16,
            Precision::Int8 => StorageMode::W8PackedF16,
        }
    }

    /// How tables, activations and outputs are stored (all but an INT8 weight).
    pub fn activation(self) -> Self {
        match self {
            StorageMode::W8F16 => StorageMode::F16,
            StorageMode::W8PackedF16 => StorageMode::PackedF16,
            other => other,
        }
    }

    /// Whether the weight is INT8 with per-column scales.
    pub fn int8_weight(self) -> bool {
        matches!(self, StorageMode::W8F16 | StorageMode::W8PackedF16)
    }

    /// A short name for records.
    pub fn name(self) -> &'static str {
        match self {
            StorageMode::F32 => "f32",
            StorageMode::F16 => "f16",
            StorageMode::PackedF16 => "f16-packed",
            StorageMode::PackedBf16 => "bf16-packed",
            StorageMode::W8F16 => "w8-f16",
            StorageMode::W8PackedF16 => "w8-f16-packed",
        }
    }

    /// Bytes per stored element of tables, activations and outputs.
    pub fn element_bytes(self) -> u32 {
        match self.activation() {
            StorageMode::F32 => 4,
            _ => 2,
        }
    }

    /// Bytes of a weight block of `k` rows and `cols` columns, in whole
    /// 4-byte words: its elements, and for INT8 the int8 values padded to a
    /// word, then one f32 scale per column.
    pub fn weight_bytes(self, k: u64, cols: u64) -> u64 {
        if self.int8_weight() {
            (k * cols).div_ceil(4) * 4 + 4 * cols
        } else {
            (k * cols * self.element_bytes() as u64).div_ceil(4) * 4
        }
    }

    /// Row strides of written buffers are padded to a whole number of words.
    pub fn padded_stride(self, cols: u32) -> u32 {
        match self.activation() {
            StorageMode::PackedF16 | StorageMode::PackedBf16 => cols.div_ceil(2) * 2,
            _ => cols,
        }
    }

    fn element(self) -> &'static str {
        match self.activation() {
            StorageMode::F32 => "f32",
            StorageMode::F16 => "f16",
            _ => "u32",
        }
    }

    fn enable(self) -> &'static str {
        match self.activation() {
            StorageMode::F16 => "enable f16;\n",
            _ => "",
        }
    }
}

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

/// Declares read-only buffer `name` at `binding`, `load_<name>(i) -> f32` and
/// `load4_<name>(i) -> vec4<f32>` (elements i..i+4). With `vec4` the buffer is
/// an array of 4-element words (`vec4<f32>`, `vec4<f16>`, or `vec2<u32>` holding
/// four packed halves) and `load4` one 16- or 8-byte load, for i a multiple of 4;
/// otherwise `load4` is four scalar loads.
fn read_accessor4(mode: StorageMode, name: &str, binding: u32, vec4: bool) -> String {
    let mode = mode.activation();
    if vec4 {
        let (word, scalar, four) = match mode {
            StorageMode::F32 => (
                "vec4<f32>",
                format!("return {name}[i >> 2u][i & 3u];"),
                format!("return {name}[i >> 2u];"),
            ),
            StorageMode::F16 => (
                "vec4<f16>",
                format!("return f32({name}[i >> 2u][i & 3u]);"),
                format!("return vec4<f32>({name}[i >> 2u]);"),
            ),
            // Halves 0..3 of a word pair: word (i >> 1) & 1 of the pair, half i & 1.
            StorageMode::PackedF16 => (
                "vec2<u32>",
                format!(
                    "let w = unpack2x16float({name}[i >> 2u][(i >> 1u) & 1u]); return select(w.x, w.y, (i & 1u) == 1u);"
                ),
                format!(
                    "let w = {name}[i >> 2u]; return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));"
                ),
            ),
            // A bf16 is the top half of an f32: the low half of a word moves up, the high one is masked.
            StorageMode::W8F16 | StorageMode::W8PackedF16 => unreachable!("mapped by activation()"),
            StorageMode::PackedBf16 => (
                "vec2<u32>",
                format!(
                    "let w = {name}[i >> 2u][(i >> 1u) & 1u]; return bitcast<f32>(select(w << 16u, w & 0xffff0000u, (i & 1u) == 1u));"
                ),
                format!(
                    "let w = {name}[i >> 2u]; return bitcast<vec4<f32>>(vec4<u32>(w.x << 16u, w.x & 0xffff0000u, w.y << 16u, w.y & 0xffff0000u));"
                ),
            ),
        };
        return format!(
            "@group(0) @binding({binding}) var<storage, read> {name}: array<{word}>;\n\
             fn load_{name}(i: u32) -> f32 {{ {scalar} }}\n\
             fn load4_{name}(i: u32) -> vec4<f32> {{ {four} }}\n"
        );
    }
    format!(
        "{}fn load4_{name}(i: u32) -> vec4<f32> {{ return vec4<f32>(load_{name}(i), load_{name}(i + 1u), load_{name}(i + 2u), load_{name}(i + 3u)); }}\n",
        read_accessor(mode, name, binding)
    )
}

/// Declares read-only buffer `name` at `binding` and `load_<name>(i) -> f32`.
fn read_accessor(mode: StorageMode, name: &str, binding: u32) -> String {
    let mode = mode.activation();
    let body = match mode {
        StorageMode::F32 => format!("return {name}[i];"),
        StorageMode::F16 => format!("return f32({name}[i]);"),
        // Element i is the low (even i) or high (odd i) half of word i/2.
        StorageMode::PackedF16 => {
            format!("let w = unpack2x16float({name}[i >> 1u]); return select(w.x, w.y, (i & 1u) == 1u);")
        }
        StorageMode::PackedBf16 => {
            format!("let w = {name}[i >> 1u]; return bitcast<f32>(select(w << 16u, w & 0xffff0000u, (i & 1u) == 1u));")
        }
        StorageMode::W8F16 | StorageMode::W8PackedF16 => unreachable!("mapped by activation()"),
    };
    format!(
        "@group(0) @binding({binding}) var<storage, read> {name}: array<{e}>;\nfn load_{name}(i: u32) -> f32 {{ {body} }}\n",
        e = mode.element()
    )
}

/// Declares writable buffer `name` at `binding` and `store2_<name>(i, v, both)`,
/// which writes `v.x` at even index `i` and `v.y` at `i + 1` when `both`.
fn write_accessor(mode: StorageMode, name: &str, binding: u32) -> String {
    let mode = mode.activation();
    let body = match mode {
        StorageMode::F32 => format!("{name}[i] = v.x; if (both) {{ {name}[i + 1u] = v.y; }}"),
        StorageMode::F16 => {
            format!("{name}[i] = f16(v.x); if (both) {{ {name}[i + 1u] = f16(v.y); }}")
        }
        // The word holds both halves; without `both` the high half is row padding.
        StorageMode::PackedF16 => {
            format!("{name}[i >> 1u] = pack2x16float(select(vec2<f32>(v.x, 0.0), v, both));")
        }
        StorageMode::PackedBf16 => format!(
            "let h = select(vec2<f32>(v.x, 0.0), v, both); {name}[i >> 1u] = bf16_bits_{name}(h.x) | (bf16_bits_{name}(h.y) << 16u);"
        ),
        StorageMode::W8F16 | StorageMode::W8PackedF16 => unreachable!("mapped by activation()"),
    };
    // Round to nearest, ties to even, as the host's conversion does; a NaN
    // stays a (quiet) NaN instead of rounding into infinity.
    let helper = if mode == StorageMode::PackedBf16 {
        format!(
            "fn bf16_bits_{name}(v: f32) -> u32 {{ let b = bitcast<u32>(v); if ((b & 0x7fffffffu) > 0x7f800000u) {{ return (b >> 16u) | 0x40u; }} return (b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u; }}\n"
        )
    } else {
        String::new()
    };
    format!(
        "@group(0) @binding({binding}) var<storage, read_write> {name}: array<{e}>;\n{helper}fn store2_{name}(i: u32, v: vec2<f32>, both: bool) {{ {body} }}\n",
        e = mode.element()
    )
}

/// The matmul kernel families.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatmulFamily {
    /// Workgroup tiles in shared memory, register-blocked (`matmul.wgsl`).
    Tiled,
    /// No shared memory or barriers, register-blocked (`matmul_direct.wgsl`).
    Direct,
    /// Rows of a shared across a subgroup by shuffles (`matmul_subgroup.wgsl`; SUBGROUP).
    Subgroup,
    /// Cooperative f16 matrices (16x16, or 8x8 where the adapter offers only
    /// those), f32 accumulation, several subgroups per workgroup
    /// (`matmul_coop.wgsl`; EXPERIMENTAL_COOPERATIVE_MATRIX, SHADER_F16, SUBGROUP).
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
            MatmulFamily::Tiled => include_str!("../../../shaders/matmul.wgsl"),
            MatmulFamily::Direct => include_str!("../../../shaders/matmul_direct.wgsl"),
            MatmulFamily::Subgroup => include_str!("../../../shaders/matmul_subgroup.wgsl"),
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
            include_str!("../../../shaders/matmul_common.wgsl"),
        )
    }
}

impl MatmulVariant {
    /// `matmul_coop.wgsl` with its constants and its per-fragment code
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
            + &include_str!("../../../shaders/matmul_coop.wgsl")
                .replace("//@decl", &decl)
                .replace("//@mma_global", &mma_global)
                .replace("//@mma", &mma)
                .replace("//@store", &store)
    }
}

/// The value [`with_bounds_guard`]'s tail words hold (little-endian words).
pub const GUARD_SENTINEL: u32 = 0xdead_beef;

/// `source`, a matmul module from [`MatmulVariant::source`] for `mode`, with
/// its loads checked: `load_a`/`load4_a` against the `p.m` x `p.lda` input,
/// `load_b`/`load4_b` against the `p.k` x `p.n` weight block. An index past
/// either overwrites the last element of `y`'s binding, which the host fills
/// with [`GUARD_SENTINEL`] and checks ([`super::GpuOptions::bounds_guard`]):
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

/// The embedding gather for `mode`.
pub fn embedding(mode: StorageMode) -> String {
    format!(
        "{}{}{}\n{}",
        mode.enable(),
        read_accessor(mode, "table", 0),
        write_accessor(mode, "out", 2),
        include_str!("../../../shaders/embedding.wgsl")
    )
}

/// How the gather copies a row: chosen from the row's size in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GatherVariant {
    /// Element pairs through the storage accessors (any row; needed for odd f16 rows).
    Pairs,
    /// Whole 4-byte words, bit for bit (rows of a multiple of 4 bytes).
    Words,
    /// Whole 16-byte `vec4<u32>` words (rows of a multiple of 16 bytes).
    Vec4,
}

impl GatherVariant {
    /// The widest copy a row of `dim` elements in `mode` allows.
    pub fn for_row(mode: StorageMode, dim: u32) -> Self {
        let bytes = dim as u64 * if mode == StorageMode::F32 { 4 } else { 2 };
        if bytes.is_multiple_of(16) {
            GatherVariant::Vec4
        } else if bytes.is_multiple_of(4) {
            GatherVariant::Words
        } else {
            GatherVariant::Pairs
        }
    }

    /// A short name for records.
    pub fn name(self) -> &'static str {
        match self {
            GatherVariant::Pairs => "gather-pairs",
            GatherVariant::Words => "gather-u32",
            GatherVariant::Vec4 => "gather-vec4",
        }
    }

    /// Bytes one invocation copies.
    pub fn word_bytes(self) -> u32 {
        match self {
            GatherVariant::Pairs => 0,
            GatherVariant::Words => 4,
            GatherVariant::Vec4 => 16,
        }
    }

    /// The WGSL for `mode`.
    pub fn source(self, mode: StorageMode) -> String {
        let words = include_str!("../../../shaders/gather_words.wgsl");
        match self {
            GatherVariant::Pairs => embedding(mode),
            GatherVariant::Words => words.replace("WORD", "u32"),
            GatherVariant::Vec4 => words.replace("WORD", "vec4<u32>"),
        }
    }
}

/// Invocations per gather workgroup.
pub const GATHER_WORKGROUP: u32 = 256;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gather_copies_the_widest_word_a_row_allows() {
        assert_eq!(
            GatherVariant::for_row(StorageMode::F32, 100),
            GatherVariant::Vec4
        );
        assert_eq!(
            GatherVariant::for_row(StorageMode::F32, 33),
            GatherVariant::Words
        );
        assert_eq!(
            GatherVariant::for_row(StorageMode::F16, 100),
            GatherVariant::Words
        );
        assert_eq!(
            GatherVariant::for_row(StorageMode::PackedF16, 64),
            GatherVariant::Vec4
        );
        assert_eq!(
            GatherVariant::for_row(StorageMode::F16, 33),
            GatherVariant::Pairs
        );
    }

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

    /// A kernel's name, its WGSL and its pipeline-overridable constants.
    type Case = (String, String, Vec<(&'static str, f64)>);

    /// Every variant must parse and validate with naga, without a device, and
    /// with its overrides resolved, compile to SPIR-V.
    #[test]
    fn every_variant_validates() {
        for mode in [
            StorageMode::F32,
            StorageMode::F16,
            StorageMode::PackedF16,
            StorageMode::PackedBf16,
            StorageMode::W8F16,
            StorageMode::W8PackedF16,
        ] {
            let mut sources: Vec<Case> = MatmulVariant::CANDIDATES
                .iter()
                .flat_map(|v| {
                    [
                        v.for_adapter(32, 16),
                        v.for_adapter(8, 8),
                        v.with_f16_acc(true),
                    ]
                })
                .flat_map(|v| {
                    [false, true].map(|vec4| {
                        let name = format!("{} vec4={vec4}", v.name());
                        (name, v.source(mode, vec4), v.constants())
                    })
                })
                .collect();
            for (name, src) in [
                ("embedding", embedding(mode)),
                ("gather-u32", GatherVariant::Words.source(mode)),
                ("gather-vec4", GatherVariant::Vec4.source(mode)),
            ] {
                sources.push((name.to_string(), src, Vec::new()));
            }
            for (name, src, constants) in sources {
                let module = naga::front::wgsl::parse_str(&src)
                    .unwrap_or_else(|e| panic!("{name} {mode:?}: {}", e.emit_to_string(&src)));
                let info = naga::valid::Validator::new(
                    naga::valid::ValidationFlags::all(),
                    naga::valid::Capabilities::all(),
                )
                .validate(&module)
                .unwrap_or_else(|e| panic!("{name} {mode:?}: {e:?}"));
                // Resolve the overrides as a pipeline would and write SPIR-V.
                let mut values = naga::back::PipelineConstants::default();
                for (k, v) in constants {
                    values.insert(k.to_string(), v);
                }
                let (module, info) = naga::back::pipeline_constants::process_overrides(
                    &module,
                    &info,
                    Some((naga::ShaderStage::Compute, "main")),
                    &values,
                )
                .unwrap_or_else(|e| panic!("{name} {mode:?} overrides: {e:?}"));
                naga::back::spv::write_vec(&module, &info, &Default::default(), None)
                    .unwrap_or_else(|e| panic!("{name} {mode:?} SPIR-V: {e:?}"));
            }
        }
    }
}

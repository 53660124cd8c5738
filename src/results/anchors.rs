//! A reference library's numbers on the points of a run (the "anchor"), as
//! the results file keeps them. The helper that measures them is
//! `anchor_helper.rs`.

use serde::{Deserialize, Serialize};

use super::{PointId, Record};
use crate::backend::BackendKind;
use crate::workload::{Op, Precision, Workload};

/// Which library anchors a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnchorKind {
    /// PyTorch on the CPU, beside the CPU backend's points.
    Torch,
}

/// The library's numbers on one point. Throughput uses the lab's own FLOP and
/// byte models (workload.rs), so ratios compare like with like.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnchorPoint {
    /// The op.
    pub op: Op,
    /// Storage precision.
    pub precision: Precision,
    /// Batch.
    pub batch: u32,
    /// Sequence length.
    pub seq: u32,
    /// Model dimension.
    pub dim: u32,
    /// Vocabulary.
    pub vocab: u32,
    /// Output columns of the projection; absent in files from before
    /// rectangular projections (then `dim`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_dim: Option<u32>,
    /// Median ms of the library's usual call, which allocates its output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fresh_p50_ms: Option<f64>,
    /// Median ms of the same kernel into a preallocated output (`out=`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_p50_ms: Option<f64>,
    /// GFLOP/s (projections) or GB/s (gather) of the faster of the two calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput: Option<f64>,
    /// Why the library was not timed on this point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

impl AnchorPoint {
    /// The workload this point describes.
    pub fn work(&self) -> Option<Workload> {
        self.id().work()
    }

    /// The faster of the two calls, ms.
    pub fn best_ms(&self) -> Option<f64> {
        match (self.fresh_p50_ms, self.out_p50_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The point it timed, as the CPU backend's point.
    pub fn id(&self) -> PointId {
        PointId {
            op: self.op,
            backend: BackendKind::Cpu,
            precision: self.precision,
            batch: self.batch,
            seq: self.seq,
            dim: self.dim,
            vocab: self.vocab,
            out_dim: self.out_dim.unwrap_or(self.dim),
            dist: Default::default(),
            scale: Default::default(),
        }
    }

    /// Whether `record` measured the same workload, on whatever data (the
    /// reference library's speed does not depend on the values).
    pub fn matches(&self, r: &Record) -> bool {
        let mut id = self.id();
        (id.dist, id.scale) = (r.id.dist, r.id.scale);
        id.same_work(&r.id)
    }
}

/// The anchor of a run: the library, and its numbers per point or why there are none.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Anchors {
    /// Which anchor was asked for.
    pub kind: AnchorKind,
    /// The library and version, threads, BLAS, as the helper reported them.
    pub library: String,
    /// Why the anchor could not run at all (no Python, no PyTorch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
    /// One entry per anchored point.
    pub points: Vec<AnchorPoint>,
}

impl Anchors {
    /// An anchor that could not run, and why.
    pub fn unavailable(kind: AnchorKind, why: String) -> Self {
        Anchors {
            kind,
            library: "torch".into(),
            unavailable: Some(why),
            points: Vec::new(),
        }
    }
}

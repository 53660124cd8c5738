//! A reference library's numbers on the points of a run (the "anchor"), as
//! the results file keeps them. The helper that measures them is
//! `anchor_helper.rs`.

use serde::{Deserialize, Serialize};

use super::record::{PointId, Record};
use crate::backend::BackendKind;
use crate::ops::op::Roof;
use crate::ops::OpParams;
use crate::precision::Precision;
use crate::workload::Workload;

/// Which library anchors a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnchorKind {
    /// PyTorch on the CPU, beside the CPU backend's points.
    Torch,
}

/// The library's numbers on one point. Throughput uses the op's own FLOP and
/// byte models, so ratios compare like with like.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnchorPoint {
    /// The op and its parameters (the record's own fields; files before
    /// schema 3 carry every op's).
    #[serde(flatten)]
    pub params: OpParams,
    /// Storage precision.
    pub precision: Precision,
    /// Median ms of the library's usual call, which allocates its output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fresh_p50_ms: Option<f64>,
    /// Median ms of the same kernel into a preallocated output (`out=`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_p50_ms: Option<f64>,
    /// GFLOP/s (points read against the FMA peak) or GB/s (against the copy
    /// bandwidth) of the faster of the two calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput: Option<f64>,
    /// Why the library was not timed on this point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

impl AnchorPoint {
    /// The workload this point describes.
    pub fn work(&self) -> Workload {
        self.id().work()
    }

    /// The faster of the two calls, ms.
    pub fn best_ms(&self) -> Option<f64> {
        match (self.fresh_p50_ms, self.out_p50_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The rate of a call of `ms` in the unit the point is read in: GFLOP/s
    /// against the FMA peak, GB/s against the copy bandwidth.
    pub fn rate(&self, ms: f64) -> f64 {
        let w = self.work();
        let per_s = 1e3 / ms;
        match w.params.roof() {
            Roof::Memory => w.bytes_moved() as f64 * per_s / 1e9,
            Roof::Compute => w.flops() as f64 * per_s / 1e9,
        }
    }

    /// The point it timed, as the CPU backend's point.
    pub fn id(&self) -> PointId {
        PointId {
            params: self.params,
            backend: BackendKind::Cpu,
            precision: self.precision,
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

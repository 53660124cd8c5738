//! Matmul autotuning: per adapter, storage mode and shape class, the fastest
//! configuration that verifies, measured once and then remembered — in memory
//! for this backend, and on disk per adapter ([`cache`]) for later runs.
//!
//! The [`Tuner`] is asked once per point, by the GPU backend's plan; it never
//! runs from a name getter. A class whose tuning failed is remembered as
//! failed, so it is not tuned again on every point.

pub mod cache;
mod classes;
mod tuner;

pub use classes::ShapeClass;
pub use tuner::tune;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;

use super::shaders::{MatmulVariant, StorageMode};
use crate::backend::TuningRecord;
use crate::error::{LabError, Result};
use crate::workload::{Op, Precision, Shape, Workload};

/// What autotuning measured for one storage mode and shape class.
#[derive(Clone, Debug)]
pub struct Tuning {
    /// The fastest verified variant.
    pub chosen: MatmulVariant,
    /// Median milliseconds of each verified variant on the tuning shape.
    pub timings_ms: Vec<(MatmulVariant, f64)>,
    /// Candidates left out, and why (failed to build or run, or to verify).
    pub rejected: Vec<(MatmulVariant, String)>,
    /// Whether this came from the tuning cache file instead of being measured now.
    pub cached: bool,
    /// Why the choice could not be written to the cache file, if it could not.
    pub not_cached: Option<String>,
}

impl Tuning {
    /// The record results.json keeps of it.
    pub fn record(&self, mode: StorageMode, class: ShapeClass) -> TuningRecord {
        TuningRecord {
            storage: mode.name().into(),
            shape_class: class.name().into(),
            chosen: self.chosen.name(),
            median_ms: self
                .timings_ms
                .iter()
                .map(|(v, ms)| (v.name(), *ms))
                .collect(),
            rejected: self
                .rejected
                .iter()
                .map(|(v, why)| (v.name(), why.clone()))
                .collect(),
            cached: self.cached,
            not_cached: self.not_cached.clone(),
        }
    }
}

/// A choice the tuner made or found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Choice {
    /// The configuration.
    pub variant: MatmulVariant,
    /// Whether it came from the cache file.
    pub cached: bool,
}

/// The autotuner's memory: what was tuned (or failed to tune) per storage mode
/// and shape class, and the cache file it reads and writes.
pub struct Tuner {
    memory: Mutex<HashMap<(StorageMode, ShapeClass), std::result::Result<Tuning, String>>>,
    cache_file: Option<PathBuf>,
}

impl Tuner {
    /// A tuner that remembers its choices in `cache_file`, if any.
    pub fn new(cache_file: Option<PathBuf>) -> Self {
        Tuner {
            memory: Mutex::new(HashMap::new()),
            cache_file,
        }
    }

    fn memory(
        &self,
    ) -> std::sync::MutexGuard<
        '_,
        HashMap<(StorageMode, ShapeClass), std::result::Result<Tuning, String>>,
    > {
        self.memory.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The choice for `mode` and `class` already made here or kept in the
    /// cache file, without tuning. `resolve` turns a cached name into a
    /// configuration this device can run (`None` when it cannot).
    pub fn known(
        &self,
        mode: StorageMode,
        class: ShapeClass,
        key: &cache::CacheKey,
        resolve: impl Fn(&str) -> Option<MatmulVariant>,
    ) -> Option<std::result::Result<Choice, String>> {
        if let Some(t) = self.memory().get(&(mode, class)) {
            return Some(t.as_ref().map(choice).map_err(Clone::clone));
        }
        let entry = cache::get(self.cache_file.as_ref()?, key)?;
        let chosen = resolve(&entry.chosen)?;
        let tuning = Tuning {
            chosen,
            timings_ms: entry
                .median_ms
                .iter()
                .filter_map(|(name, ms)| Some((resolve(name)?, *ms)))
                .collect(),
            rejected: Vec::new(),
            cached: true,
            not_cached: None,
        };
        let c = choice(&tuning);
        self.memory().insert((mode, class), Ok(tuning));
        Some(Ok(c))
    }

    /// The choice for `mode` and `class`: known (see [`Self::known`]), or
    /// measured now by `tune` and remembered, in memory and in the cache file.
    pub fn choose(
        &self,
        mode: StorageMode,
        class: ShapeClass,
        key: &cache::CacheKey,
        resolve: impl Fn(&str) -> Option<MatmulVariant>,
        tune: impl FnOnce() -> Result<Tuning>,
    ) -> Result<Choice> {
        if let Some(known) = self.known(mode, class, key, resolve) {
            return known.map_err(LabError::Gpu);
        }
        let mut tuning = match tune() {
            Ok(t) => t,
            // A lost device is the sweep's to handle; the next device tunes afresh.
            Err(e @ LabError::DeviceLost(_)) => return Err(e),
            Err(e) => {
                self.memory().insert((mode, class), Err(e.to_string()));
                return Err(e);
            }
        };
        if let Some(path) = &self.cache_file {
            let entry = cache::CacheEntry {
                key: key.clone(),
                chosen: tuning.chosen.name(),
                median_ms: tuning
                    .timings_ms
                    .iter()
                    .map(|(v, ms)| (v.name(), *ms))
                    .collect::<BTreeMap<_, _>>(),
            };
            if let Err(e) = cache::put(path, entry) {
                tuning.not_cached = Some(e.to_string());
            }
        }
        let c = choice(&tuning);
        self.memory().insert((mode, class), Ok(tuning));
        Ok(c)
    }

    /// What was tuned so far, per storage mode and shape class, in a stable order.
    pub fn tunings(&self) -> Vec<(StorageMode, ShapeClass, Tuning)> {
        let mut all: Vec<_> = self
            .memory()
            .iter()
            .filter_map(|(k, t)| Some((k.0, k.1, t.as_ref().ok()?.clone())))
            .collect();
        all.sort_by_key(|(m, c, _)| (m.name(), *c));
        all
    }

    /// [`Self::tunings`] as results.json records them.
    pub fn records(&self) -> Vec<TuningRecord> {
        self.tunings()
            .iter()
            .map(|(m, c, t)| t.record(*m, *c))
            .collect()
    }
}

fn choice(t: &Tuning) -> Choice {
    Choice {
        variant: t.chosen,
        cached: t.cached,
    }
}

/// The workload `class` is tuned on at `precision`: its tuning shape, the dim
/// halved until `fits` accepts it (a device with small bindings).
pub fn tuning_workload(
    class: ShapeClass,
    software: bool,
    precision: Precision,
    fits: impl Fn(&Workload) -> bool,
) -> Result<Workload> {
    let (b, s, d) = class.tuning_shape(software);
    let make = |d: u32| -> Result<Workload> {
        Ok(Workload {
            op: Op::Matmul,
            precision,
            shape: Shape::new(b, s, d, 1)?,
        })
    };
    let mut dim = d;
    loop {
        let work = make(dim)?;
        if fits(&work) || dim <= 8 {
            return Ok(work);
        }
        dim /= 2;
    }
}

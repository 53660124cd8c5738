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
    /// Milliseconds each candidate's pipelines took to compile while tuning
    /// (the points that then use the choice find them compiled).
    pub compile_ms: Vec<(MatmulVariant, f64)>,
}

impl Tuning {
    /// Every verified candidate's median ms, by configuration name.
    fn median_ms(&self) -> BTreeMap<String, f64> {
        self.timings_ms
            .iter()
            .map(|(v, ms)| (v.name(), *ms))
            .collect()
    }

    /// The record results.json keeps of it.
    pub fn record(&self, mode: StorageMode, class: ShapeClass) -> TuningRecord {
        TuningRecord {
            storage: mode.name().into(),
            shape_class: class.name().into(),
            chosen: self.chosen.name(),
            median_ms: self.median_ms(),
            rejected: self
                .rejected
                .iter()
                .map(|(v, why)| (v.name(), why.clone()))
                .collect(),
            cached: self.cached,
            not_cached: self.not_cached.clone(),
            compile_ms: self
                .compile_ms
                .iter()
                .map(|(v, ms)| (v.name(), *ms))
                .collect(),
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
            compile_ms: Vec::new(),
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
                median_ms: tuning.median_ms(),
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
            data: Default::default(),
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

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn key() -> cache::CacheKey {
        cache::CacheKey {
            adapter: "test adapter".into(),
            api: "vulkan".into(),
            driver: "1".into(),
            storage: "f32".into(),
            shape_class: "small".into(),
            f16_accumulate: false,
            shader_checks: "full".into(),
            checksum: cache::checksum(),
        }
    }

    fn tuning(chosen: MatmulVariant) -> Tuning {
        Tuning {
            chosen,
            timings_ms: vec![(chosen, 1.0), (MatmulVariant::TILED, 2.0)],
            rejected: Vec::new(),
            cached: false,
            not_cached: None,
            compile_ms: Vec::new(),
        }
    }

    fn resolve(name: &str) -> Option<MatmulVariant> {
        MatmulVariant::parse(name)
    }

    const MODE: StorageMode = StorageMode::F32;
    const CLASS: ShapeClass = ShapeClass::Small;

    #[test]
    fn a_class_is_tuned_once_and_naming_never_tunes() {
        let tuner = Tuner::new(None);
        assert!(tuner.known(MODE, CLASS, &key(), resolve).is_none());
        let calls = Cell::new(0);
        let tune = || {
            calls.set(calls.get() + 1);
            Ok(tuning(MatmulVariant::DIRECT))
        };
        let c = tuner.choose(MODE, CLASS, &key(), resolve, tune).unwrap();
        assert_eq!((c.variant, c.cached), (MatmulVariant::DIRECT, false));
        let again = tuner
            .choose(MODE, CLASS, &key(), resolve, || {
                calls.set(calls.get() + 1);
                Ok(tuning(MatmulVariant::TILED))
            })
            .unwrap();
        assert_eq!(again, c);
        assert_eq!(calls.get(), 1, "tuned once");
        assert_eq!(tuner.known(MODE, CLASS, &key(), resolve), Some(Ok(c)));
        let records = tuner.records();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].chosen, "direct-4x4");
        assert_eq!(records[0].median_ms["direct-4x4"], 1.0);
    }

    #[test]
    fn a_failed_tuning_is_remembered_not_repeated() {
        let tuner = Tuner::new(None);
        let calls = Cell::new(0);
        for _ in 0..3 {
            let err = tuner
                .choose(MODE, CLASS, &key(), resolve, || {
                    calls.set(calls.get() + 1);
                    Err(LabError::Gpu("no candidate verified".into()))
                })
                .unwrap_err();
            assert!(err.to_string().contains("no candidate verified"), "{err}");
        }
        assert_eq!(calls.get(), 1);
        assert!(tuner.tunings().is_empty());
    }

    #[test]
    fn a_lost_device_is_not_remembered() {
        let tuner = Tuner::new(None);
        let lost = tuner.choose(MODE, CLASS, &key(), resolve, || {
            Err(LabError::DeviceLost("gone".into()))
        });
        assert!(matches!(lost, Err(LabError::DeviceLost(_))));
        assert!(tuner.known(MODE, CLASS, &key(), resolve).is_none());
    }

    #[test]
    fn the_cache_file_carries_a_choice_to_the_next_tuner() {
        let dir = std::env::temp_dir().join(format!("kernel-lab-tuner-{}", std::process::id()));
        let path = dir.join("tuning.json");
        let first = Tuner::new(Some(path.clone()));
        first
            .choose(MODE, CLASS, &key(), resolve, || {
                Ok(tuning(MatmulVariant::DIRECT))
            })
            .unwrap();
        let next = Tuner::new(Some(path));
        let c = next
            .choose(MODE, CLASS, &key(), resolve, || panic!("tuned again"))
            .unwrap();
        assert_eq!((c.variant, c.cached), (MatmulVariant::DIRECT, true));
        assert!(next.records()[0].cached);
        // Another adapter's tuner finds nothing in the same file.
        let other = cache::CacheKey {
            adapter: "other".into(),
            ..key()
        };
        let elsewhere = Tuner::new(Some(dir.join("tuning.json")));
        assert!(elsewhere.known(MODE, CLASS, &other, resolve).is_none());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn tuning_shapes_shrink_until_they_fit() {
        let w = tuning_workload(ShapeClass::LargeDeep, true, Precision::F32, |w| {
            w.shape.dim <= 256
        })
        .unwrap();
        assert_eq!(w.shape.dim, 256);
        assert_eq!(w.shape.seq, 1024);
    }
}

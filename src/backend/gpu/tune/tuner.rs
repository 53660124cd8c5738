//! The autotuner's memory: per (op, storage mode, shape class) of one
//! adapter, the fastest candidate that verified, measured once and then
//! remembered — in memory for this backend, and on disk per adapter
//! ([`super::cache`]) for later runs. Generic over the candidate type (an op's
//! kernel configurations, [`Candidate`]), as cubecl's `TunableSet` is: an op
//! that tunes brings its candidates, its key and a way to read a cached name
//! back; the memory, the cache and the timing are written once.
//!
//! The [`Tuner`] is asked once per point, by an op's GPU plan; it never runs
//! from a name getter. A class whose tuning failed is remembered as failed,
//! so it is not tuned again on every point.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;

use super::cache::{self, CacheKey};
use crate::backend::info::TuningRecord;
use crate::error::{LabError, Result};

/// A configuration an op's tuner chooses among.
pub trait Candidate: Copy + PartialEq + std::fmt::Debug {
    /// Its name in records and the cache file; parsed back by the op.
    fn name(&self) -> String;
}

/// What a tuning is for: the op, how its elements are stored, and the class
/// of shapes it holds for (ordered as the op orders its classes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TuneKey {
    /// The op's name.
    pub op: &'static str,
    /// The storage mode's name.
    pub storage: &'static str,
    /// The shape class's rank among the op's classes.
    pub class: u8,
    /// The shape class's name.
    pub class_name: &'static str,
}

/// What autotuning measured for one key.
#[derive(Clone, Debug, PartialEq)]
pub struct Tuning {
    /// The fastest verified candidate.
    pub chosen: String,
    /// Median milliseconds of each verified candidate on the tuning shape.
    pub timings_ms: Vec<(String, f64)>,
    /// Candidates left out, and why (failed to build or run, or to verify).
    pub rejected: Vec<(String, String)>,
    /// Whether this came from the tuning cache file instead of being measured now.
    pub cached: bool,
    /// Why the choice could not be written to the cache file, if it could not.
    pub not_cached: Option<String>,
    /// Milliseconds each candidate's pipelines took to compile while tuning
    /// (the points that then use the choice find them compiled).
    pub compile_ms: Vec<(String, f64)>,
}

impl Tuning {
    /// Every verified candidate's median ms, by name.
    fn median_ms(&self) -> BTreeMap<String, f64> {
        self.timings_ms.iter().cloned().collect()
    }

    /// The record results.json keeps of it.
    pub fn record(&self, key: TuneKey) -> TuningRecord {
        TuningRecord {
            op: Some(key.op.to_string()),
            storage: key.storage.into(),
            shape_class: key.class_name.into(),
            chosen: self.chosen.clone(),
            median_ms: self.median_ms(),
            rejected: self.rejected.iter().cloned().collect(),
            cached: self.cached,
            not_cached: self.not_cached.clone(),
            compile_ms: self.compile_ms.iter().cloned().collect(),
        }
    }
}

/// A choice the tuner made or found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Choice<V> {
    /// The configuration.
    pub variant: V,
    /// Whether it came from the cache file.
    pub cached: bool,
}

type Memory = HashMap<TuneKey, std::result::Result<Tuning, String>>;

/// What was tuned (or failed to tune) on one adapter, and the cache file it
/// reads and writes.
pub struct Tuner {
    memory: Mutex<Memory>,
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

    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The choice for `key` already made here or kept in the cache file
    /// (under `cache_key`), without tuning. `resolve` turns a name into a
    /// configuration this device runs (`None` when it cannot).
    pub fn known<V>(
        &self,
        key: TuneKey,
        cache_key: &CacheKey,
        resolve: impl Fn(&str) -> Option<V>,
    ) -> Option<std::result::Result<Choice<V>, String>> {
        if let Some(t) = self.memory().get(&key) {
            return Some(match t {
                Ok(t) => resolve(&t.chosen)
                    .map(|variant| Choice {
                        variant,
                        cached: t.cached,
                    })
                    .ok_or_else(|| format!("the tuned {} no longer runs here", t.chosen)),
                Err(e) => Err(e.clone()),
            });
        }
        let entry = cache::get(self.cache_file.as_ref()?, cache_key)?;
        let variant = resolve(&entry.chosen)?;
        let tuning = Tuning {
            chosen: entry.chosen.clone(),
            timings_ms: entry
                .median_ms
                .into_iter()
                .filter(|(name, _)| resolve(name).is_some())
                .collect(),
            rejected: Vec::new(),
            cached: true,
            not_cached: None,
            compile_ms: Vec::new(),
        };
        self.memory().insert(key, Ok(tuning));
        Some(Ok(Choice {
            variant,
            cached: true,
        }))
    }

    /// The choice for `key`: known (see [`Self::known`]), or measured now
    /// by `tune` and remembered, in memory and in the cache file.
    pub fn choose<V>(
        &self,
        key: TuneKey,
        cache_key: &CacheKey,
        resolve: impl Fn(&str) -> Option<V>,
        tune: impl FnOnce() -> Result<Tuning>,
    ) -> Result<Choice<V>> {
        if let Some(known) = self.known(key, cache_key, &resolve) {
            return known.map_err(LabError::Gpu);
        }
        let mut tuning = match tune() {
            Ok(t) => t,
            // A lost device is the sweep's to handle; the next device tunes afresh.
            Err(e @ LabError::DeviceLost(_)) => return Err(e),
            Err(e) => {
                self.memory().insert(key, Err(e.to_string()));
                return Err(e);
            }
        };
        let variant = resolve(&tuning.chosen).ok_or_else(|| {
            LabError::Gpu(format!("the tuned {} does not run here", tuning.chosen))
        })?;
        if let Some(path) = &self.cache_file {
            let entry = cache::CacheEntry {
                key: cache_key.clone(),
                chosen: tuning.chosen.clone(),
                median_ms: tuning.median_ms(),
            };
            if let Err(e) = cache::put(path, entry) {
                tuning.not_cached = Some(e.to_string());
            }
        }
        let cached = tuning.cached;
        self.memory().insert(key, Ok(tuning));
        Ok(Choice { variant, cached })
    }

    /// What was tuned so far, by key, in a stable order.
    pub fn tunings(&self) -> Vec<(TuneKey, Tuning)> {
        let mut all: Vec<_> = self
            .memory()
            .iter()
            .filter_map(|(k, t)| Some((*k, t.as_ref().ok()?.clone())))
            .collect();
        all.sort_by_key(|(k, _)| *k);
        all
    }

    /// [`Self::tunings`] as results.json records them.
    pub fn records(&self) -> Vec<TuningRecord> {
        self.tunings().iter().map(|(k, t)| t.record(*k)).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq)]
    struct V(&'static str);

    impl Candidate for V {
        fn name(&self) -> String {
            self.0.to_string()
        }
    }

    const KEY: TuneKey = TuneKey {
        op: "op",
        storage: "f32",
        class: 0,
        class_name: "small",
    };

    fn cache_key() -> CacheKey {
        CacheKey {
            op: "op".into(),
            adapter: "test adapter".into(),
            api: "vulkan".into(),
            driver: "1".into(),
            storage: "f32".into(),
            shape_class: "small".into(),
            f16_accumulate: false,
            shader_checks: "full".into(),
            checksum: cache::checksum(&["kernels"]),
        }
    }

    fn tuning(chosen: &'static str) -> Tuning {
        Tuning {
            chosen: chosen.into(),
            timings_ms: vec![(chosen.into(), 1.0), ("slow".into(), 2.0)],
            rejected: Vec::new(),
            cached: false,
            not_cached: None,
            compile_ms: Vec::new(),
        }
    }

    fn resolve(name: &str) -> Option<V> {
        ["fast", "slow", "direct"]
            .into_iter()
            .find(|n| *n == name)
            .map(V)
    }

    #[test]
    fn a_class_is_tuned_once_and_naming_never_tunes() {
        let tuner = Tuner::new(None);
        assert!(tuner.known(KEY, &cache_key(), resolve).is_none());
        let calls = Cell::new(0);
        let tune = || {
            calls.set(calls.get() + 1);
            Ok(tuning("direct"))
        };
        let c = tuner.choose(KEY, &cache_key(), resolve, tune).unwrap();
        assert_eq!((c.variant, c.cached), (V("direct"), false));
        let again = tuner
            .choose(KEY, &cache_key(), resolve, || {
                calls.set(calls.get() + 1);
                Ok(tuning("fast"))
            })
            .unwrap();
        assert_eq!(again, c);
        assert_eq!(calls.get(), 1, "tuned once");
        assert_eq!(tuner.known(KEY, &cache_key(), resolve), Some(Ok(c)));
        let records = tuner.records();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].chosen, "direct");
        assert_eq!(records[0].op.as_deref(), Some("op"));
        assert_eq!(records[0].median_ms["direct"], 1.0);
    }

    #[test]
    fn keys_of_two_ops_or_classes_are_tuned_apart_and_listed_in_order() {
        let tuner = Tuner::new(None);
        let other = TuneKey {
            class: 1,
            class_name: "large",
            ..KEY
        };
        let second_op = TuneKey {
            op: "another",
            ..KEY
        };
        for (k, v) in [(other, "slow"), (second_op, "fast"), (KEY, "direct")] {
            tuner
                .choose(k, &cache_key(), resolve, || Ok(tuning(v)))
                .unwrap();
        }
        let keys: Vec<TuneKey> = tuner.tunings().iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, [second_op, KEY, other]);
    }

    #[test]
    fn a_failed_tuning_is_remembered_not_repeated() {
        let tuner = Tuner::new(None);
        let calls = Cell::new(0);
        for _ in 0..3 {
            let err = tuner
                .choose(KEY, &cache_key(), resolve, || {
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
        let lost = tuner.choose(KEY, &cache_key(), resolve, || {
            Err(LabError::DeviceLost("gone".into()))
        });
        assert!(matches!(lost, Err(LabError::DeviceLost(_))));
        assert!(tuner.known(KEY, &cache_key(), resolve).is_none());
    }

    #[test]
    fn the_cache_file_carries_a_choice_to_the_next_tuner() {
        let dir = std::env::temp_dir().join(format!("kernel-lab-tuner-{}", std::process::id()));
        let path = dir.join("tuning.json");
        let first = Tuner::new(Some(path.clone()));
        first
            .choose(KEY, &cache_key(), resolve, || Ok(tuning("direct")))
            .unwrap();
        let next = Tuner::new(Some(path));
        let c = next
            .choose(KEY, &cache_key(), resolve, || panic!("tuned again"))
            .unwrap();
        assert_eq!((c.variant, c.cached), (V("direct"), true));
        assert!(next.records()[0].cached);
        // Another adapter's, or another op's, tuner finds nothing in the same file.
        for other in [
            CacheKey {
                adapter: "other".into(),
                ..cache_key()
            },
            CacheKey {
                op: "another".into(),
                ..cache_key()
            },
        ] {
            let elsewhere = Tuner::new(Some(dir.join("tuning.json")));
            assert!(elsewhere.known(KEY, &other, resolve).is_none());
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}

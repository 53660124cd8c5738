//! The autotuner's choices kept on disk, per adapter, so that a later run on
//! the same machine skips the tuning. An entry is keyed by the adapter (name,
//! API, driver), the storage mode, shape class and options, and a fingerprint
//! of the matmul sources and candidate list: changing a kernel or the
//! candidates invalidates every entry. Each point a cached choice runs is still
//! verified; the cache only saves the timing of the candidates.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use super::shaders::MatmulVariant;

/// A fingerprint of everything a tuning result depends on in this build.
fn code_fingerprint() -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    env!("CARGO_PKG_VERSION").hash(&mut h);
    for src in [
        include_str!("../../../shaders/matmul.wgsl"),
        include_str!("../../../shaders/matmul_direct.wgsl"),
        include_str!("../../../shaders/matmul_subgroup.wgsl"),
        include_str!("../../../shaders/matmul_coop.wgsl"),
        include_str!("../../../shaders/matmul_common.wgsl"),
    ] {
        src.hash(&mut h);
    }
    format!("{:?}", MatmulVariant::CANDIDATES).hash(&mut h);
    h.finish()
}

/// The default cache file: `$KERNEL_LAB_CACHE_DIR`, else `$XDG_CACHE_HOME/kernel-lab`,
/// else `$HOME/.cache/kernel-lab`, then `tuning.json`.
pub fn default_path() -> Option<PathBuf> {
    let dir = std::env::var_os("KERNEL_LAB_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("kernel-lab")))
        .or_else(|| std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache/kernel-lab")))?;
    Some(dir.join("tuning.json"))
}

/// The key of one tuning result.
pub fn key(adapter: &str, api: &str, driver: &str, what: &str) -> String {
    format!(
        "{adapter} | {api} | {driver} | {what} | code {:016x}",
        code_fingerprint()
    )
}

/// The entries of the cache file (empty when it is missing or unreadable:
/// a broken cache costs a re-tune, never a run).
fn load(path: &Path) -> serde_json::Map<String, serde_json::Value> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// The cached entry for `key`, if any.
pub fn get(path: &Path, key: &str) -> Option<serde_json::Value> {
    load(path).get(key).cloned()
}

/// Stores `entry` under `key`. Failing to write is reported by the caller's
/// choice; the tuning result stands either way.
pub fn put(path: &Path, key: &str, entry: serde_json::Value) -> std::io::Result<()> {
    let mut all = load(path);
    all.insert(key.to_string(), entry);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let json = serde_json::to_vec_pretty(&all).expect("a JSON map serialises");
    crate::results::write_atomic(path, &json).map_err(|e| std::io::Error::other(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_a_broken_file_reads_as_empty() {
        let dir = std::env::temp_dir().join(format!("kernel-lab-cache-{}", std::process::id()));
        let path = dir.join("tuning.json");
        let k = key("gpu", "vulkan", "drv 1", "f32 large");
        assert!(get(&path, &k).is_none());
        put(&path, &k, serde_json::json!({"chosen": "direct-4x4"})).unwrap();
        assert_eq!(get(&path, &k).unwrap()["chosen"], "direct-4x4");
        assert!(get(&path, &key("other", "vulkan", "drv 1", "f32 large")).is_none());
        std::fs::write(&path, "not json").unwrap();
        assert!(get(&path, &k).is_none());
        let _ = std::fs::remove_dir_all(dir);
    }
}

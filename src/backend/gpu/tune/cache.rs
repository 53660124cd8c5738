//! The autotuner's choices kept on disk, per adapter, so that a later run on
//! the same machine skips the tuning. An entry is keyed by a [`CacheKey`]: the
//! op, the adapter (name, API, driver), the storage mode, shape class and
//! options, and a checksum of the op's kernel sources and candidate list, so
//! changing a kernel or the candidates invalidates every entry (as cubecl's
//! tune cache does). Each point a cached choice runs is still verified; the
//! cache only saves the timing of the candidates.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Version of the cache file's layout; a file of another version is ignored.
/// (3: entries name their op.)
const FORMAT: u32 = 3;

/// What a cached choice depends on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheKey {
    /// The op tuned.
    pub op: String,
    /// Adapter name.
    pub adapter: String,
    /// wgpu backend (vulkan, metal, ...).
    pub api: String,
    /// Driver name and version.
    pub driver: String,
    /// Storage mode name (f32, f16, f16-packed).
    pub storage: String,
    /// Shape class name.
    pub shape_class: String,
    /// Whether FP16 products accumulate in f16.
    pub f16_accumulate: bool,
    /// The runtime checks the kernels are built with (`ShaderChecks::name`).
    pub shader_checks: String,
    /// Checksum of the op's kernel sources, its candidate list and this
    /// crate's version ([`checksum`]).
    pub checksum: String,
}

/// One cached choice.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// What it was tuned for.
    pub key: CacheKey,
    /// The configuration chosen.
    pub chosen: String,
    /// Median ms of every verified candidate on the tuning shape.
    pub median_ms: BTreeMap<String, f64>,
}

/// The cache file.
#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    format: u32,
    entries: Vec<CacheEntry>,
}

/// FNV-1a: a checksum that is the same in every build and Rust version.
fn fnv1a(bytes: impl IntoIterator<Item = u8>, mut h: u64) -> u64 {
    for b in bytes {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A checksum of everything a tuning result depends on in this build: the
/// crate's version and `parts` (an op's kernel sources and its candidate list).
pub fn checksum(parts: &[&str]) -> String {
    let mut h = 0xcbf2_9ce4_8422_2325;
    for part in std::iter::once(env!("CARGO_PKG_VERSION")).chain(parts.iter().copied()) {
        h = fnv1a(part.bytes(), h);
    }
    format!("{h:016x}")
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

/// The file's entries (none when it is missing, unreadable or of another
/// format: a broken cache costs a re-tune, never a run).
fn load(path: &Path) -> Vec<CacheEntry> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str::<CacheFile>(&t).ok())
        .filter(|f| f.format == FORMAT)
        .map(|f| f.entries)
        .unwrap_or_default()
}

/// The cached entry for `key`, if any.
pub fn get(path: &Path, key: &CacheKey) -> Option<CacheEntry> {
    load(path).into_iter().find(|e| &e.key == key)
}

/// Stores `entry`, replacing any with the same key. Failing to write is
/// reported by the caller's choice; the tuning result stands either way.
pub fn put(path: &Path, entry: CacheEntry) -> crate::error::Result<()> {
    let mut entries = load(path);
    entries.retain(|e| e.key != entry.key);
    entries.push(entry);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| crate::error::LabError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let file = CacheFile {
        format: FORMAT,
        entries,
    };
    let json = serde_json::to_vec_pretty(&file).expect("the cache serialises");
    crate::atomic_file::write(path, &json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(adapter: &str) -> CacheKey {
        CacheKey {
            op: "op".into(),
            adapter: adapter.into(),
            api: "vulkan".into(),
            driver: "drv 1".into(),
            storage: "f32".into(),
            shape_class: "large".into(),
            f16_accumulate: false,
            shader_checks: "full".into(),
            checksum: checksum(&["kernel"]),
        }
    }

    #[test]
    fn entries_round_trip_and_a_broken_file_reads_as_empty() {
        let dir = std::env::temp_dir().join(format!("kernel-lab-cache-{}", std::process::id()));
        let path = dir.join("tuning.json");
        let k = key("gpu");
        assert!(get(&path, &k).is_none());
        let entry = CacheEntry {
            key: k.clone(),
            chosen: "direct-4x4".into(),
            median_ms: [("direct-4x4".to_string(), 1.5)].into(),
        };
        put(&path, entry.clone()).unwrap();
        assert_eq!(get(&path, &k), Some(entry.clone()));
        assert!(get(&path, &key("other")).is_none());
        let stale = CacheKey {
            checksum: "0".into(),
            ..k.clone()
        };
        assert!(
            get(&path, &stale).is_none(),
            "another build's entry is not used"
        );
        // Storing again replaces, never duplicates.
        put(&path, entry).unwrap();
        assert_eq!(load(&path).len(), 1);
        std::fs::write(&path, "not json").unwrap();
        assert!(get(&path, &k).is_none());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_checksum_is_stable_within_a_build_and_follows_the_sources() {
        assert_eq!(checksum(&["a", "b"]), checksum(&["a", "b"]));
        assert_eq!(checksum(&["a"]).len(), 16);
        assert_ne!(checksum(&["a", "b"]), checksum(&["a", "c"]));
    }
}

//! The results contract: one [`Record`] per point (`record.rs`), a reference
//! library's numbers on the same points (`anchors.rs`), and the results file
//! that holds them with the environment they were measured in. Files are
//! written atomically (temporary file, then rename), so a reader never sees
//! half a file.

mod anchors;
mod record;

pub use anchors::{AnchorKind, AnchorPoint, Anchors};
pub use record::{
    LatencyMs, Measured, MemoryBytes, PhasesMs, PointId, Record, Skip, SkipKind, Throughput,
};

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::backend::{BackendKind, Ceilings, DeviceInfo, TuningRecord};
use crate::error::{LabError, Result};
use crate::machine_state::MachineState;

/// Version of the results schema; bumped when a field changes meaning. 3: a
/// record carries its op's own parameters (a projection no `vocab`, a lookup
/// no `out_dim`), memory is by named buffer role, tunings name their op;
/// files of schema 1 and 2 still read.
pub const SCHEMA_VERSION: u32 = 3;

/// Where the results were measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    /// The GPU used, if any.
    pub gpu: Option<DeviceInfo>,
    /// The host CPU.
    pub cpu: DeviceInfo,
    /// Logical cores.
    pub cores: usize,
    /// The CPU threads the run used (its thread pool: `--threads`,
    /// `RAYON_NUM_THREADS`, else the cores); absent in older files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// Operating system and architecture.
    pub os: String,
    /// kernel-lab's version.
    pub crate_version: String,
    /// The git commit the binary was built from, if known.
    pub git_commit: Option<String>,
    /// The wgpu version linked.
    pub wgpu_version: String,
    /// When the run started (seconds since the Unix epoch).
    pub timestamp_unix: u64,
    /// Probed ceilings per backend, when the run measured them.
    #[serde(default)]
    pub ceilings: BTreeMap<BackendKind, Ceilings>,
    /// What the GPU's autotuning measured: per op, storage mode and shape
    /// class, every verified candidate's median ms and the one chosen.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub autotuning: Vec<TuningRecord>,
    /// Load, governor and GPU clocks/limits when the (latest) run began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_before: Option<MachineState>,
    /// The same when it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_after: Option<MachineState>,
    /// A loaded or throttling machine, said in words.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub machine_warnings: Vec<String>,
}

impl Environment {
    /// Captures the environment for the given devices.
    pub fn capture(gpu: Option<DeviceInfo>, cpu: DeviceInfo) -> Self {
        Environment {
            gpu,
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            threads: Some(rayon::current_num_threads()),
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            crate_version: env!("CARGO_PKG_VERSION").into(),
            git_commit: option_env!("KERNEL_LAB_GIT_COMMIT").map(String::from),
            wgpu_version: "30".into(),
            timestamp_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            ceilings: Default::default(),
            autotuning: Vec::new(),
            machine_before: None,
            machine_after: None,
            machine_warnings: Vec::new(),
        }
    }
}

/// Seconds since the Unix epoch as ISO 8601 UTC (`2026-11-27T14:43:41Z`).
pub fn iso_time(unix: u64) -> String {
    let (days, secs) = ((unix / 86400) as i64, unix % 86400);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// A results file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResultsFile {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The experiment that produced it, as given.
    pub spec: serde_json::Value,
    /// Where it was measured.
    pub environment: Environment,
    /// False while a run is in progress or was interrupted.
    pub complete: bool,
    /// One record per point.
    pub records: Vec<Record>,
    /// A reference library timed on the same points in the same run, if the spec asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchors: Option<Anchors>,
}

impl ResultsFile {
    /// The spec's own models (`[[model]]`), which its layer labels may name
    /// beside the presets; none where the spec has none (or they do not parse).
    pub fn models(&self) -> Vec<crate::models::Model> {
        self.spec
            .get("model")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default()
    }

    /// Saves to `path` atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).expect("results serialise");
        crate::atomic_file::write(path, &json)
    }

    /// Loads a results file, naming the file in any error. Strict about what
    /// it cannot understand: a schema newer than this build reads, or a
    /// record whose measurement does not parse (a field missing or of another
    /// type), is an error naming the record and the field — never a record
    /// silently read as unmeasured, which a resume would then rewrite.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| LabError::Io {
            path: path.into(),
            source,
        })?;
        Self::parse(&text)
            .map_err(|why| LabError::invalid("results file", &path.display().to_string(), &why))
    }

    /// [`Self::load`] on text; the error says what is wrong.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        match value.get("schema_version").and_then(serde_json::Value::as_u64) {
            Some(v) if v as u32 as u64 == v && v as u32 <= SCHEMA_VERSION => {}
            Some(v) => {
                return Err(format!(
                    "schema_version {v} is newer than this kernel-lab reads ({SCHEMA_VERSION}); use the kernel-lab that wrote it"
                ))
            }
            None => return Err("no schema_version: not a kernel-lab results file".into()),
        }
        let records = value
            .get("records")
            .and_then(serde_json::Value::as_array)
            .cloned()
            .unwrap_or_default();
        // From the text, not the value: a value's maps are sorted by key, and
        // a record's buffer roles keep the op's order (ids, table, output).
        let file: ResultsFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
        for (i, (raw, rec)) in records.iter().zip(&file.records).enumerate() {
            // A measurement is there when its first field is; it must then parse whole.
            if raw.get("latency_ms").is_some() && rec.measured.is_none() {
                let why = serde_json::from_value::<Measured>(raw.clone())
                    .err()
                    .map_or_else(|| "it does not parse".to_string(), |e| e.to_string());
                return Err(format!(
                    "record {i} ({} {} {} {}) has a measurement this kernel-lab cannot read: {why}",
                    rec.id.op(),
                    rec.id.backend,
                    rec.id.precision,
                    rec.id.shape_label()
                ));
            }
        }
        Ok(file)
    }
}

#[cfg(test)]
mod time_tests {
    #[test]
    fn iso_times_are_utc_dates() {
        assert_eq!(super::iso_time(0), "1970-01-01T00:00:00Z");
        // `date -u -d @1795790621`
        assert_eq!(super::iso_time(1_795_790_621), "2026-11-27T14:43:41Z");
        assert_eq!(super::iso_time(951_782_400), "2000-02-29T00:00:00Z");
    }
}

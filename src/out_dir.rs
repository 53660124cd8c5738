//! Claiming an output folder for one run: created and checked writable, locked
//! against a second kernel-lab writing there at the same time, and never
//! silently replacing results that are already there.
//!
//! The lock is a file, `.kernel-lab.lock`, created exclusively and holding the
//! owner's process id; it is removed when the claim is dropped. A lock whose
//! process is gone (a run killed with -9) is stale and taken over.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{LabError, Result};

/// The lock file's name inside an output folder.
pub const LOCK_FILE: &str = ".kernel-lab.lock";

/// What a new run does with results already in its folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    /// Refuse, pointing to --resume and --force (a folder the user named).
    Refuse,
    /// Replace them, removing the old run's files (--force).
    Replace,
    /// Move them to a sibling folder named after the old results' time (the
    /// default folder, so `kernel-lab` twice keeps both runs).
    Archive,
}

/// What the run intends to do with the folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intent {
    /// A new run.
    Fresh(Existing),
    /// Continue the results.json that is there.
    Resume,
}

/// A claimed output folder; dropping it releases the lock.
#[derive(Debug)]
pub struct Claim {
    lock: PathBuf,
    /// Where an earlier run's files were moved, if they were.
    pub archived: Option<PathBuf>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.lock);
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LabError + '_ {
    move |source| LabError::Io {
        path: path.into(),
        source,
    }
}

/// Creates `dir` if needed, takes its lock, and checks `intent` against what
/// the folder holds (see [`Existing`]); the old run's files (results.json,
/// report.md, charts) never stay beside a new run's.
pub fn claim(dir: &Path, intent: Intent) -> Result<Claim> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let lock = dir.join(LOCK_FILE);
    let mut claim = take_lock(&lock)?;
    let results = dir.join("results.json");
    if let (Intent::Fresh(existing), true) = (intent, results.exists()) {
        match existing {
            Existing::Refuse => {
                return Err(LabError::invalid(
                    "--out",
                    &dir.display().to_string(),
                    "already holds a results.json: continue it with `kernel-lab run --resume <dir>`, or pass --force to replace it",
                ))
            }
            Existing::Replace => move_previous_run(dir, None)?,
            Existing::Archive => {
                let when = std::fs::metadata(&results)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs());
                let name = dir
                    .file_name()
                    .map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
                let mut to = dir.with_file_name(format!("{name}-{when}"));
                let mut n = 2;
                while to.exists() {
                    to = dir.with_file_name(format!("{name}-{when}-{n}"));
                    n += 1;
                }
                std::fs::create_dir_all(&to).map_err(io(&to))?;
                move_previous_run(dir, Some(&to))?;
                claim.archived = Some(to);
            }
        }
    }
    Ok(claim)
}

/// Moves what a run writes in its folder (results.json, report.md, SVG
/// charts) into `to`, or removes it.
fn move_previous_run(dir: &Path, to: Option<&Path>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(io(dir))?.flatten() {
        let p = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "results.json" || name == "report.md" || name.ends_with(".svg") {
            match to {
                Some(to) => std::fs::rename(&p, to.join(&name)).map_err(io(&p))?,
                None => std::fs::remove_file(&p).map_err(io(&p))?,
            }
        }
    }
    Ok(())
}

fn take_lock(lock: &Path) -> Result<Claim> {
    for _ in 0..2 {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(lock)
        {
            Ok(mut f) => {
                write!(f, "{}", std::process::id()).map_err(io(lock))?;
                return Ok(Claim {
                    lock: lock.into(),
                    archived: None,
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let owner = std::fs::read_to_string(lock).unwrap_or_default();
                let pid = owner.trim().parse::<u32>().ok();
                if pid.is_some_and(alive) {
                    return Err(LabError::invalid(
                        "--out",
                        &lock.parent().unwrap_or(lock).display().to_string(),
                        &format!(
                            "is in use by kernel-lab process {} (its lock is {}); wait for it, or choose another --out",
                            pid.unwrap_or_default(),
                            lock.display()
                        ),
                    ));
                }
                // The owner is gone (killed, or the file is garbage): take over.
                let _ = std::fs::remove_file(lock);
            }
            Err(e) => return Err(io(lock)(e)),
        }
    }
    Err(LabError::invalid(
        "--out",
        &lock.display().to_string(),
        "its lock could not be taken (another run keeps recreating it)",
    ))
}

/// Whether process `pid` exists. On Linux, /proc says; elsewhere a lock is
/// assumed live, and a stale one must be removed by hand (the error names it).
fn alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("kernel-lab-outdir-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_second_claim_is_refused_while_the_first_lives_and_allowed_after() {
        let d = temp("lock");
        let first = claim(&d, Intent::Fresh(Existing::Refuse)).expect("first claim");
        let err = claim(&d, Intent::Resume).unwrap_err().to_string();
        assert!(
            err.contains(&format!(
                "in use by kernel-lab process {}",
                std::process::id()
            )),
            "{err}"
        );
        drop(first);
        assert!(!d.join(LOCK_FILE).exists(), "the lock goes with the claim");
        claim(&d, Intent::Resume).expect("free again");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_stale_lock_is_taken_over() {
        let d = temp("stale");
        std::fs::create_dir_all(&d).unwrap();
        // No process has this id (above the kernel's pid_max), or the file is garbage.
        for stale in ["4194305", "not a pid"] {
            std::fs::write(d.join(LOCK_FILE), stale).unwrap();
            let c = claim(&d, Intent::Resume).expect("a dead owner's lock is taken over");
            let owner = std::fs::read_to_string(d.join(LOCK_FILE)).unwrap();
            assert_eq!(owner, std::process::id().to_string());
            drop(c);
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn results_are_never_replaced_silently() {
        let d = temp("fresh");
        std::fs::create_dir_all(&d).unwrap();
        for f in [
            "results.json",
            "report.md",
            "seed-matmul-cpu-f32.svg",
            "notes.txt",
        ] {
            std::fs::write(d.join(f), "x").unwrap();
        }
        let err = claim(&d, Intent::Fresh(Existing::Refuse))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("already holds a results.json")
                && err.contains("--resume")
                && err.contains("--force"),
            "{err}"
        );
        assert!(
            d.join("results.json").exists(),
            "a refused run touches nothing"
        );
        drop(claim(&d, Intent::Resume).expect("resume is what it is for"));
        drop(claim(&d, Intent::Fresh(Existing::Replace)).expect("forced"));
        let left: Vec<String> = std::fs::read_dir(&d)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            left,
            vec!["notes.txt".to_string()],
            "only the run's own files are removed"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn the_default_folder_archives_the_previous_run_beside_it() {
        let d = temp("archive");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("results.json"), "old").unwrap();
        std::fs::write(d.join("a.svg"), "old").unwrap();
        let c = claim(&d, Intent::Fresh(Existing::Archive)).expect("archived");
        let to = c.archived.clone().expect("moved somewhere");
        let base = d.file_name().unwrap().to_string_lossy().into_owned();
        assert!(to.file_name().unwrap().to_string_lossy().starts_with(&base));
        assert_eq!(
            std::fs::read_to_string(to.join("results.json")).unwrap(),
            "old"
        );
        assert!(to.join("a.svg").exists() && !d.join("a.svg").exists());
        assert!(!d.join("results.json").exists());
        drop(c);
        // A second archive in the same second does not overwrite the first.
        std::fs::write(d.join("results.json"), "newer").unwrap();
        let c2 = claim(&d, Intent::Fresh(Existing::Archive)).unwrap();
        let to2 = c2.archived.clone().unwrap();
        assert_ne!(to, to2);
        assert_eq!(
            std::fs::read_to_string(to.join("results.json")).unwrap(),
            "old"
        );
        assert_eq!(
            std::fs::read_to_string(to2.join("results.json")).unwrap(),
            "newer"
        );
        for p in [&d, &to, &to2] {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

//! kernel-lab: measures what drives the cost of LLM inference ops — the
//! embedding lookup and the projection matmul — across dim, batch, sequence
//! length, precision and hardware (a GPU through wgpu, or the CPU), with every
//! result verified against an f64 reference.
//!
//! The surface is what the `kernel-lab` binary and a user of the crate need:
//! the ops and their registry (`ops`), the backends, the measurement engine,
//! experiments, results and reports. Helpers that only the lab itself uses
//! (atomic file writes, the energy window, the machine-state reader, the
//! precision-cost accumulator) are private; the types they put in a record
//! are re-exported here.

pub mod anchor_helper;
mod atomic_file;
pub mod backend;
pub mod data;
mod energy;
pub mod error;
pub mod experiment;
pub mod gpu_monitor;
mod machine_state;
pub mod measure;
pub mod measure_point;
pub mod memory;
pub mod models;
pub mod ops;
pub mod out_dir;
pub mod precision;
mod precision_cost;
pub mod prepared_op;
pub mod report;
pub mod results;
pub mod sample_clocks;
pub mod stats;
pub mod stop;
pub mod sweep;
pub mod verify;
pub mod workload;

pub use energy::Energy;
pub use error::{LabError, Result};
pub use machine_state::MachineState;
pub use precision_cost::PrecisionCost;

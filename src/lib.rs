//! kernel-lab: measures what drives the cost of LLM inference ops — the
//! embedding lookup and the projection matmul — across dim, batch, sequence
//! length, precision and hardware (a GPU through wgpu, or the CPU), with every
//! result verified against an f64 reference.

pub mod anchor_helper;
pub mod atomic_file;
pub mod backend;
pub mod data;
pub mod energy;
pub mod error;
pub mod experiment;
pub mod gpu_monitor;
pub mod machine_state;
pub mod measure;
pub mod measure_point;
pub mod memory;
pub mod models;
pub mod ops;
pub mod out_dir;
pub mod precision;
pub mod precision_cost;
pub mod prepared_op;
pub mod report;
pub mod results;
pub mod sample_clocks;
pub mod stats;
pub mod stop;
pub mod sweep;
pub mod toml_error;
pub mod verify;
pub mod workload;

pub use error::{LabError, Result};

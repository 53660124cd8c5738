//! Autotuning, for any op that has configurations to choose among: per
//! adapter, op, storage mode and shape class, the fastest candidate that
//! verifies ([`timing`]), measured once and remembered in memory and on disk
//! ([`tuner`], [`cache`]).

pub mod cache;
pub mod timing;
pub mod tuner;

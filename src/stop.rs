//! The stop flag: Ctrl-C asks a running sweep to stop after the point it is
//! measuring, and anything waiting on a child process (the anchor helper)
//! checks it. Signal-safe: one atomic.

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

/// Asks a running sweep to stop after the point it is measuring (signal-safe).
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

/// Whether a stop was requested.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

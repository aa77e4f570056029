//! Ctrl-C, SIGTERM and SIGHUP become an orderly stop, so that the cleanup guards still run
//! (sandboxes deleted, server stopped, overlays unmounted). A second signal exits at once.
//!
//! A handler (signal-hook's self-pipe) feeds one thread; the signals are not blocked, so the
//! child processes (which get default handlers on exec) see them normally. The server runs in
//! its own process group, so a terminal's Ctrl-C reaches only us and we stop it in order.

use std::sync::atomic::{AtomicBool, Ordering};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

static STOP: AtomicBool = AtomicBool::new(false);

/// Start the thread that turns the signals into a stop request.
pub(super) fn install() -> anyhow::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new().name("bench-signals".into()).spawn(move || {
        for signal in signals.forever() {
            if STOP.swap(true, Ordering::SeqCst) {
                eprintln!("\nbench: signal {signal} again: exiting without cleanup");
                std::process::exit(130);
            }
            eprintln!(
                "\nbench: signal {signal}: stopping after the current request and cleaning \
                     up (send it again to exit at once)"
            );
        }
    })?;
    Ok(())
}

/// Whether a stop was asked for.
pub(super) fn stopping() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Fail with "interrupted" once a stop was asked for.
pub(super) fn check() -> anyhow::Result<()> {
    anyhow::ensure!(!stopping(), "interrupted");
    Ok(())
}

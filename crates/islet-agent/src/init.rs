//! PID 1 duties. As a container's init the agent must reap orphans (or they pile up as
//! zombies) and pass termination signals on, so it forks: the parent stays PID 1 and only
//! reaps, the child serves. Runs before any thread exists, which is what makes fork sound.
#![allow(unsafe_code)]

use nix::errno::Errno;
use nix::sys::signal::{kill, pthread_sigmask, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, getpid, ForkResult, Pid};

const FORWARDED: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

fn handled() -> SigSet {
    let mut set = SigSet::empty();
    for sig in FORWARDED {
        set.add(sig);
    }
    set.add(Signal::SIGCHLD);
    set
}

/// Returns in the process that should run the server. When this process is PID 1 that is a
/// forked child, and the caller's process never returns from here.
pub fn reap_if_pid1() {
    if getpid().as_raw() != 1 {
        return;
    }
    let set = handled();
    // Blocked before fork so that no signal (not even the child's SIGCHLD) can arrive in a
    // window where it would be dropped: a blocked signal stays pending, even for PID 1,
    // which the kernel otherwise spares from default-action signals.
    if let Err(e) = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None) {
        eprintln!("islet-agent: cannot block signals ({e}); serving as PID 1 without a reaper");
        return;
    }
    // SAFETY: called from `main` before the tokio runtime, tracing or anything else has
    // started a thread, so the child is an exact single-threaded copy.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => unblock(&set),
        Ok(ForkResult::Parent { child }) => reap_forever(child, &set),
        Err(e) => {
            eprintln!("islet-agent: fork failed ({e}); serving as PID 1 without a reaper");
            unblock(&set);
        }
    }
}

fn unblock(set: &SigSet) {
    let _ = pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(set), None);
}

fn reap_forever(server: Pid, set: &SigSet) -> ! {
    loop {
        if let Some(code) = reap_all(server) {
            std::process::exit(code);
        }
        match set.wait() {
            Ok(Signal::SIGCHLD) | Err(_) => {}
            Ok(sig) => {
                let _ = kill(server, sig);
            }
        }
    }
}

/// Reaps every exited child; the server's exit status once it is among them.
fn reap_all(server: Pid) -> Option<i32> {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == server => return Some(code),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == server => {
                return Some(128 + sig as i32)
            }
            Ok(WaitStatus::StillAlive) => return None,
            Ok(_) | Err(Errno::EINTR) => continue,
            // ECHILD: nothing left at all, not even the server.
            Err(_) => return Some(1),
        }
    }
}

//! Starting a shell on a fresh pseudo-terminal, and async I/O on the master side.
//!
//! The only module besides `init` with `unsafe`: making the child a session leader with the
//! PTY as its controlling terminal must happen between fork and exec, and the window-size
//! ioctl has no safe wrapper.
#![allow(unsafe_code)]

use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::pty::{openpty, Winsize};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use tokio::io::unix::AsyncFd;
use tokio::process::Child;

pub(crate) struct Pty {
    master: AsyncFd<File>,
}

pub(crate) struct ShellSpec<'a> {
    pub shell: &'a str,
    pub args: &'a [&'a str],
    pub cwd: &'a Path,
    pub env: &'a HashMap<String, String>,
    pub cols: u16,
    pub rows: u16,
}

fn winsize(cols: u16, rows: u16) -> Winsize {
    Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 }
}

fn set_cloexec(fd: &OwnedFd) -> io::Result<()> {
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    Ok(())
}

pub(crate) fn spawn(spec: &ShellSpec<'_>) -> io::Result<(Pty, Child)> {
    let pair = openpty(Some(&winsize(spec.cols, spec.rows)), None)?;
    // openpty's fds are inheritable; a master leaked into other children would keep the
    // terminal alive after its shell is gone.
    set_cloexec(&pair.master)?;
    set_cloexec(&pair.slave)?;
    fcntl(pair.master.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;

    let mut cmd = Command::new(spec.shell);
    cmd.args(spec.args)
        .current_dir(spec.cwd)
        .stdin(Stdio::from(pair.slave.try_clone()?))
        .stdout(Stdio::from(pair.slave.try_clone()?))
        .stderr(Stdio::from(pair.slave));
    crate::command::apply_env(&mut cmd, spec.env);
    // SAFETY: the closure runs in the forked child before exec and only calls setsid(2) and
    // ioctl(2), both async-signal-safe; it touches no memory shared with the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            // stdin is the slave by now; make it this new session's controlling terminal.
            if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = tokio::process::Command::from(cmd).spawn()?;
    let master = File::from(pair.master);
    // SAFETY: `master` owns its fd and moves into the AsyncFd, which keeps it open (never
    // closed or replaced behind tokio's back) until the registration is dropped.
    let master = unsafe { AsyncFd::register(master)? };
    let pty = Pty { master };
    Ok((pty, child))
}

impl Pty {
    /// Ok(0) once no process holds the slave side any more (Linux reports that as EIO).
    pub(crate) async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.master.readable().await?;
            match guard.try_io(|fd| fd.get_ref().read(buf)) {
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Ok(0),
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    pub(crate) async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.master.writable().await?;
            match guard.try_io(|fd| fd.get_ref().write(data)) {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    pub(crate) fn resize(&self, cols: u16, rows: u16) -> io::Result<()> {
        let ws = winsize(cols, rows);
        // SAFETY: TIOCSWINSZ reads one `winsize` through the pointer, which points at a live
        // local of exactly that type; the fd is an open PTY master owned by `self`.
        let rc = unsafe {
            libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws as *const Winsize)
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

//! Loop devices: a regular file seen as a block device, so that a sandbox's disk image can be
//! mounted. The only module of this crate with `unsafe`: the loop driver is driven by ioctls
//! that neither `nix` nor `libc` wrap.
//!
//! Devices are configured with `LO_FLAGS_AUTOCLEAR`: the kernel detaches the device by itself
//! once nothing holds it open any more, i.e. when the filesystem on it is unmounted. So there is
//! nothing to detach explicitly and nothing leaks when the process dies.
//!
//! They also use direct I/O on the image where the host filesystem allows it: buffered, every
//! block would be cached twice (by the filesystem on the device and by the image file) and
//! writes were ~8x slower here (400 MB/s against 2.3-4 GB/s, the host's own speed, with direct
//! I/O).
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

// From <linux/loop.h>.
const LOOP_CONFIGURE: libc::Ioctl = 0x4C0A;
const LOOP_CTL_GET_FREE: libc::Ioctl = 0x4C82;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LO_FLAGS_DIRECT_IO: u32 = 16;
const LO_NAME_SIZE: usize = 64;
const LO_KEY_SIZE: usize = 32;

/// `struct loop_info64`.
#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; LO_NAME_SIZE],
    lo_crypt_name: [u8; LO_NAME_SIZE],
    lo_encrypt_key: [u8; LO_KEY_SIZE],
    lo_init: [u64; 2],
}

/// `struct loop_config` (the argument of `LOOP_CONFIGURE`, Linux 5.8+).
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

// The kernel's layout: 232 and 304 bytes.
const _: () = assert!(std::mem::size_of::<LoopInfo64>() == 232);
const _: () = assert!(std::mem::size_of::<LoopConfig>() == 304);

impl LoopConfig {
    fn new(backing: &File, name: &Path, flags: u32) -> Self {
        let mut file_name = [0u8; LO_NAME_SIZE];
        // Informational only (shown by `losetup -l`): the tail of the path, NUL-terminated.
        let bytes = name.as_os_str().as_encoded_bytes();
        let tail = &bytes[bytes.len().saturating_sub(LO_NAME_SIZE - 1)..];
        file_name[..tail.len()].copy_from_slice(tail);
        Self {
            fd: backing.as_raw_fd() as u32,
            block_size: 0,
            info: LoopInfo64 {
                lo_device: 0,
                lo_inode: 0,
                lo_rdevice: 0,
                lo_offset: 0,
                lo_sizelimit: 0,
                lo_number: 0,
                lo_encrypt_type: 0,
                lo_encrypt_key_size: 0,
                lo_flags: flags,
                lo_file_name: file_name,
                lo_crypt_name: [0; LO_NAME_SIZE],
                lo_encrypt_key: [0; LO_KEY_SIZE],
                lo_init: [0; 2],
            },
            reserved: [0; 8],
        }
    }
}

/// A loop device bound to a file. Keep it until the device is mounted: dropping it closes the
/// last handle, and an unmounted auto-clear device then detaches.
pub(crate) struct LoopDevice {
    pub path: PathBuf,
    _handle: File,
}

/// How often to retry when another process grabs the free device we were offered.
const ATTEMPTS: usize = 20;

/// Bind `image` to a free loop device (read-write, auto-clear, direct I/O if possible).
pub(crate) fn attach(image: &Path) -> io::Result<LoopDevice> {
    match attach_with(image, LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO) {
        // A host filesystem without direct I/O: buffered it is.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => attach_with(image, LO_FLAGS_AUTOCLEAR),
        other => other,
    }
}

fn attach_with(image: &Path, flags: u32) -> io::Result<LoopDevice> {
    let backing = OpenOptions::new().read(true).write(true).open(image)?;
    let control = OpenOptions::new().read(true).write(true).open("/dev/loop-control")?;
    let config = LoopConfig::new(&backing, image, flags);
    let mut last_error = None;
    for _ in 0..ATTEMPTS {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument; it returns a device number or -1.
        let number = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE) };
        if number < 0 {
            return Err(io::Error::last_os_error());
        }
        let path = PathBuf::from(format!("/dev/loop{number}"));
        let device = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(device) => device,
            // The node may appear a moment after the device (a /dev without devtmpfs).
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                last_error = Some(e);
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            Err(e) => return Err(e),
        };
        // SAFETY: `config` is a fully initialised `struct loop_config` that outlives the call;
        // the kernel only reads it. `backing` (whose fd it names) is open for the whole call.
        let rc = unsafe {
            libc::ioctl(device.as_raw_fd(), LOOP_CONFIGURE, &config as *const LoopConfig)
        };
        if rc == 0 {
            return Ok(LoopDevice { path, _handle: device });
        }
        let error = io::Error::last_os_error();
        // Someone else configured this device between GET_FREE and CONFIGURE: take another.
        if error.raw_os_error() != Some(libc::EBUSY) {
            return Err(error);
        }
        last_error = Some(error);
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("no free loop device")))
}

//! The checker's probes that need system calls Rust's standard library does not make:
//! `socket(2)` by family, and a system call through the 32-bit `int 0x80` entry point.
#![allow(unsafe_code)]

/// Address families and the socket type each is tried with: the four a sandbox needs, then
/// ones it must not have (vsock is not network-namespaced; the rest load kernel modules).
pub(crate) const FAMILIES: &[(&str, i32, i32)] = &[
    ("unix", libc::AF_UNIX, libc::SOCK_DGRAM),
    ("inet", libc::AF_INET, libc::SOCK_DGRAM),
    ("inet6", libc::AF_INET6, libc::SOCK_DGRAM),
    ("netlink", libc::AF_NETLINK, libc::SOCK_RAW),
    ("packet", libc::AF_PACKET, libc::SOCK_DGRAM),
    ("vsock", libc::AF_VSOCK, libc::SOCK_STREAM),
    ("tipc", libc::AF_TIPC, libc::SOCK_RDM),
    ("rds", libc::AF_RDS, libc::SOCK_SEQPACKET),
    ("bluetooth", libc::AF_BLUETOOTH, libc::SOCK_RAW),
    ("alg", libc::AF_ALG, libc::SOCK_SEQPACKET),
];

/// `ok`, or the errno name the kernel answered with.
pub(crate) fn open_socket(family: i32, kind: i32) -> String {
    // SAFETY: socket(2) takes plain integers; the descriptor is closed right after.
    let fd = unsafe { libc::socket(family, kind, 0) };
    if fd >= 0 {
        // SAFETY: `fd` is the descriptor just opened, owned here.
        unsafe { libc::close(fd) };
        return "ok".into();
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EPERM) => "EPERM".into(),
        Some(libc::EACCES) => "EACCES".into(),
        Some(libc::EAFNOSUPPORT) => "EAFNOSUPPORT".into(),
        Some(libc::EINVAL) => "EINVAL".into(),
        Some(libc::EPROTONOSUPPORT) => "EPROTONOSUPPORT".into(),
        Some(libc::ESOCKTNOSUPPORT) => "ESOCKTNOSUPPORT".into(),
        Some(n) => format!("errno {n}"),
        None => "error".into(),
    }
}

/// `getpid` through the 32-bit entry point, in this process: prints its result.
pub(crate) fn int80_getpid() {
    let ret: i32;
    // SAFETY: `int 0x80` with eax = 20 is the i386 `getpid`, which takes no arguments and
    // touches no memory; in a 64-bit process it either runs, fails or the filter kills us.
    unsafe {
        std::arch::asm!("int 0x80", inlateout("eax") 20i32 => ret, options(nostack));
    }
    println!("{ret}");
}

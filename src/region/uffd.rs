//! A small userfaultfd binding over libc: the `repr(C)` structs of `linux/userfaultfd.h`
//! and the API, REGISTER, UNREGISTER, COPY, ZEROPAGE, MOVE, WRITEPROTECT and WAKE ioctls.
//!
//! Hand-written instead of the `userfaultfd` crate, whose build needs libclang and which
//! has no unprivileged path. Opening tries, in order: the `userfaultfd(2)` syscall (works
//! for root or with `vm.unprivileged_userfaultfd=1`), `/dev/userfaultfd` (works for whoever
//! may open it), and the syscall with `UFFD_USER_MODE_ONLY` (any user since Linux 5.11;
//! then only user-space accesses are handled: a *kernel* access to a missing page, such as
//! `write(2)` from an evicted page, fails with EFAULT instead of faulting it in).
//!
//! `UFFD_FEATURE_MOVE` (Linux 6.8) is required: `UFFDIO_MOVE` refuses (EBUSY) to take a
//! page the kernel has pinned for I/O, which is how eviction leaves such pages alone.
//!
//! Invariants: every ioctl gets a struct of exactly the size its number encodes; the fd is
//! closed exactly once (on drop); addresses passed in are page-aligned and inside a range
//! the caller registered (checked by the kernel too, which returns EINVAL otherwise).

use crate::page::PAGE_SIZE;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const UFFD_API: u64 = 0xAA;
const UFFD_USER_MODE_ONLY: libc::c_int = 1;
const REGISTER_MODE_MISSING: u64 = 1;
const REGISTER_MODE_WP: u64 = 2;
const COPY_MODE_WP: u64 = 2;
const WRITEPROTECT_MODE_WP: u64 = 1;
const FEATURE_MOVE: u64 = 1 << 16;
/// `UFFD_FEATURE_POISON` (Linux 6.6, so present wherever MOVE is).
const FEATURE_POISON: u64 = 1 << 14;
pub const EVENT_PAGEFAULT: u8 = 0x12;
pub const PAGEFAULT_FLAG_WRITE: u64 = 1;
pub const PAGEFAULT_FLAG_WP: u64 = 2;

/// `_IOC(dir, 0xAA, nr, size)` as the kernel encodes it.
const fn ioc(dir: u64, nr: u64, size: usize) -> u64 {
    dir << 30 | (size as u64) << 16 | 0xAA << 8 | nr
}
const READ: u64 = 2;
const READ_WRITE: u64 = 3;
const USERFAULTFD_IOC_NEW: u64 = ioc(0, 0x00, 0);
const UFFDIO_API: u64 = ioc(READ_WRITE, 0x3F, size_of::<Api>());
const UFFDIO_REGISTER: u64 = ioc(READ_WRITE, 0x00, size_of::<Register>());
const UFFDIO_UNREGISTER: u64 = ioc(READ, 0x01, size_of::<Range>());
const UFFDIO_WAKE: u64 = ioc(READ, 0x02, size_of::<Range>());
const UFFDIO_COPY: u64 = ioc(READ_WRITE, 0x03, size_of::<Copy>());
const UFFDIO_ZEROPAGE: u64 = ioc(READ_WRITE, 0x04, size_of::<ZeroPage>());
const UFFDIO_MOVE: u64 = ioc(READ_WRITE, 0x05, size_of::<Move>());
const UFFDIO_WRITEPROTECT: u64 = ioc(READ_WRITE, 0x06, size_of::<WriteProtect>());
const UFFDIO_POISON: u64 = ioc(READ_WRITE, 0x08, size_of::<Poison>());

#[repr(C)]
struct Api {
    api: u64,
    features: u64,
    ioctls: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Range {
    start: u64,
    len: u64,
}

#[repr(C)]
struct Register {
    range: Range,
    mode: u64,
    ioctls: u64,
}

#[repr(C)]
struct Copy {
    dst: u64,
    src: u64,
    len: u64,
    mode: u64,
    copy: i64,
}

#[repr(C)]
struct ZeroPage {
    range: Range,
    mode: u64,
    zeropage: i64,
}

#[repr(C)]
struct Move {
    dst: u64,
    src: u64,
    len: u64,
    mode: u64,
    moved: i64,
}

#[repr(C)]
struct WriteProtect {
    range: Range,
    mode: u64,
}

#[repr(C)]
struct Poison {
    range: Range,
    mode: u64,
    updated: i64,
}

/// `struct uffd_msg` for page faults (the union's other members are not used).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Message {
    pub event: u8,
    reserved1: u8,
    reserved2: u16,
    reserved3: u32,
    pub flags: u64,
    pub address: u64,
    ptid: u32,
    reserved4: u32,
}

const _: () = assert!(size_of::<Message>() == 32);

/// How the userfaultfd was obtained (and so what it can handle).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Full: kernel-side accesses to missing pages are handled too.
    Full,
    /// `UFFD_USER_MODE_ONLY`: only faults from user space are handled.
    UserModeOnly,
}

pub struct Userfaultfd {
    fd: OwnedFd,
    pub access: Access,
}

impl Userfaultfd {
    /// Opens a userfaultfd (non-blocking, close-on-exec) and negotiates the API.
    pub fn open() -> io::Result<Userfaultfd> {
        let flags = libc::O_CLOEXEC | libc::O_NONBLOCK;
        let (fd, access) = match syscall_open(flags) {
            Ok(fd) => (fd, Access::Full),
            Err(first) => match device_open(flags) {
                Ok(fd) => (fd, Access::Full),
                Err(_) => match syscall_open(flags | UFFD_USER_MODE_ONLY) {
                    Ok(fd) => (fd, Access::UserModeOnly),
                    Err(_) => return Err(first),
                },
            },
        };
        let uffd = Userfaultfd { fd, access };
        let mut api = Api {
            api: UFFD_API,
            features: FEATURE_MOVE | FEATURE_POISON,
            ioctls: 0,
        };
        uffd.ioctl(UFFDIO_API, &mut api).map_err(|e| {
            if e.raw_os_error() == Some(libc::EINVAL) {
                io::Error::new(
                    io::ErrorKind::Unsupported,
                    "the kernel's userfaultfd has no UFFDIO_MOVE (Linux 6.8 or later), which eviction needs to leave pages pinned for I/O alone",
                )
            } else {
                e
            }
        })?;
        Ok(uffd)
    }

    /// Registers `[start, start + len)` for missing-page and write-protect faults.
    pub fn register(&self, start: usize, len: usize) -> io::Result<()> {
        let mut register = Register {
            range: range(start, len),
            mode: REGISTER_MODE_MISSING | REGISTER_MODE_WP,
            ioctls: 0,
        };
        self.ioctl(UFFDIO_REGISTER, &mut register)
    }

    pub fn unregister(&self, start: usize, len: usize) -> io::Result<()> {
        self.ioctl(UFFDIO_UNREGISTER, &mut range(start, len))
    }

    /// Maps a copy of `page` at the missing page `address` (write-protected if
    /// `protected`) and wakes its waiters. `EEXIST` (someone mapped it first) is success:
    /// the page is there.
    pub fn copy(&self, address: usize, page: &[u8; PAGE_SIZE], protected: bool) -> io::Result<()> {
        let mut copy = Copy {
            dst: address as u64,
            src: page.as_ptr() as u64,
            len: PAGE_SIZE as u64,
            mode: if protected { COPY_MODE_WP } else { 0 },
            copy: 0,
        };
        match self.ioctl(UFFDIO_COPY, &mut copy) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => self.wake(address),
            other => other,
        }
    }

    /// Maps the shared zero page at the missing page `address` and wakes its waiters.
    pub fn zeropage(&self, address: usize) -> io::Result<()> {
        let mut zero = ZeroPage {
            range: range(address, PAGE_SIZE),
            mode: 0,
            zeropage: 0,
        };
        match self.ioctl(UFFDIO_ZEROPAGE, &mut zero) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => self.wake(address),
            other => other,
        }
    }

    /// Moves the present page at `src` to the missing page `dst` (both registered), or
    /// returns `Ok(false)` if the kernel refuses because the page is pinned (for I/O:
    /// `O_DIRECT`, io_uring fixed buffers, vmsplice) or not exclusively ours (EBUSY).
    /// The kernel checks the pin after unmapping `src` and puts it back if it raced, so
    /// a pinned page is never taken.
    pub fn move_page(&self, src: usize, dst: usize) -> io::Result<bool> {
        let mut mv = Move {
            dst: dst as u64,
            src: src as u64,
            len: PAGE_SIZE as u64,
            mode: 0,
            moved: 0,
        };
        match self.ioctl(UFFDIO_MOVE, &mut mv) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Write-protects a present page (the kernel refuses DONTWAKE with WP: protecting
    /// wakes nobody anyway).
    pub fn protect(&self, address: usize) -> io::Result<()> {
        self.write_protect(address, WRITEPROTECT_MODE_WP)
    }

    /// Lifts write protection and wakes the writers waiting on it.
    pub fn unprotect(&self, address: usize) -> io::Result<()> {
        self.write_protect(address, 0)
    }

    /// Marks the missing page at `address` poisoned (an access raises SIGBUS, a system
    /// call on it fails with EFAULT) and wakes the threads waiting on it; EEXIST if the
    /// page is present.
    pub fn poison(&self, address: usize) -> io::Result<()> {
        let mut poison = Poison {
            range: range(address, PAGE_SIZE),
            mode: 0,
            updated: 0,
        };
        self.ioctl(UFFDIO_POISON, &mut poison)
    }

    /// Wakes threads waiting on a fault at `address` (they retry the access).
    pub fn wake(&self, address: usize) -> io::Result<()> {
        self.ioctl(UFFDIO_WAKE, &mut range(address, PAGE_SIZE))
    }

    /// Reads pending fault messages into `out` (non-blocking); returns how many.
    pub fn read(&self, out: &mut [Message]) -> io::Result<usize> {
        let bytes = size_of_val(out);
        // SAFETY: `out` is a valid, writable buffer of `bytes` bytes of plain-old-data
        // messages (any bit pattern is a valid `Message`), and the fd is open.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), out.as_mut_ptr().cast(), bytes) };
        if n < 0 {
            let error = io::Error::last_os_error();
            return match error.kind() {
                io::ErrorKind::WouldBlock => Ok(0),
                _ => Err(error),
            };
        }
        Ok(n as usize / size_of::<Message>())
    }

    /// Blocks until a fault message is pending or `stop` is readable; returns whether
    /// `stop` fired.
    pub fn wait(&self, stop: &impl AsRawFd) -> io::Result<bool> {
        let mut fds = [
            libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: stop.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        loop {
            // SAFETY: `fds` is a valid array of two pollfds for the duration of the call.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
            if n >= 0 {
                return Ok(fds[1].revents != 0);
            }
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                return Err(error);
            }
        }
    }

    /// Blocks until `stop` is readable (a byte, or its writer closed).
    pub fn wait_for_stop(stop: &impl AsRawFd) -> io::Result<()> {
        let mut fd = libc::pollfd {
            fd: stop.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        loop {
            // SAFETY: `fd` is a valid pollfd for the duration of the call.
            if unsafe { libc::poll(&mut fd, 1, -1) } >= 0 {
                return Ok(());
            }
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                return Err(error);
            }
        }
    }

    fn write_protect(&self, address: usize, mode: u64) -> io::Result<()> {
        let mut wp = WriteProtect {
            range: range(address, PAGE_SIZE),
            mode,
        };
        self.ioctl(UFFDIO_WRITEPROTECT, &mut wp)
    }

    fn ioctl<T>(&self, request: u64, arg: &mut T) -> io::Result<()> {
        // SAFETY: every request constant encodes `size_of::<T>()` of the struct passed
        // with it (see the constants above), `arg` is a live, exclusive, repr(C) struct
        // of that layout, and the fd is an open userfaultfd.
        let result =
            unsafe { libc::ioctl(self.fd.as_raw_fd(), request as libc::Ioctl, arg as *mut T) };
        if result < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl AsRawFd for Userfaultfd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn range(start: usize, len: usize) -> Range {
    Range {
        start: start as u64,
        len: len as u64,
    }
}

fn syscall_open(flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: userfaultfd(2) takes one int of flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_userfaultfd, flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the syscall returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn device_open(flags: libc::c_int) -> io::Result<OwnedFd> {
    let device = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/userfaultfd")?;
    // SAFETY: USERFAULTFD_IOC_NEW takes the flags as its integer argument and returns a
    // new userfaultfd or -1; the device fd is open for the call.
    let fd = unsafe {
        libc::ioctl(
            device.as_raw_fd(),
            USERFAULTFD_IOC_NEW as libc::Ioctl,
            flags,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the ioctl returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

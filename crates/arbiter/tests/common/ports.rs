//! Ports for tests that must not race other tests for them (shared by the
//! arbiter crate's tests and the multi-process tests).

/// A loopback port where nothing listens, held until the guard drops: a
/// socket bound to it that never calls listen(2), so connections to it are
/// refused and no other process can take the port meanwhile.
pub struct RefusingPort {
    pub port: u16,
    _fd: std::os::fd::OwnedFd,
}

pub fn refusing_port() -> RefusingPort {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket calls on a descriptor this function owns; the
    // sockaddr is a fully initialised sockaddr_in of the size passed.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let owned = std::os::fd::OwnedFd::from_raw_fd(fd);
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        assert_eq!(libc::bind(fd, &sa as *const _ as *const libc::sockaddr, len), 0, "bind: {}", std::io::Error::last_os_error());
        let mut got = len;
        assert_eq!(libc::getsockname(fd, &mut sa as *mut _ as *mut libc::sockaddr, &mut got), 0);
        RefusingPort { port: u16::from_be(sa.sin_port), _fd: owned }
    }
}

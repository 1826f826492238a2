//! Waiting for terminal input with our own poll(2), so a hung-up terminal is noticed.
//!
//! crossterm's unix event source loops forever when the tty reads 0 bytes or EIO after a
//! hang-up (closing the terminal window, `tmux kill-session`), never returning to the
//! caller, so the UI loop could never see the SIGHUP flag and the process spun at 100% CPU.
//! The loop therefore waits here first and asks crossterm for events only when this says
//! the input is readable or the tick is over (resizes reach crossterm through its own
//! SIGWINCH pipe, so they still arrive within a tick).

use std::os::fd::RawFd;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Input is waiting to be read.
    Ready,
    /// Nothing arrived within the timeout (or a signal interrupted the wait).
    Timeout,
    /// The terminal is gone: reading it would return end of file or an error forever.
    HangUp,
}

/// The file descriptor crossterm reads keys from: stdin when it is a terminal (else
/// crossterm opens /dev/tty, which we cannot watch; None then).
pub fn terminal_fd() -> Option<RawFd> {
    // SAFETY: isatty only inspects the descriptor.
    (unsafe { libc::isatty(libc::STDIN_FILENO) } == 1).then_some(libc::STDIN_FILENO)
}

/// Wait up to `timeout` for `fd` to become readable, telling a hang-up apart.
pub fn wait(fd: RawFd, timeout: Duration) -> Wait {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    if n < 0 {
        // EINTR: a signal arrived; the loop checks its flag next.
        return Wait::Timeout;
    }
    if n == 0 {
        return Wait::Timeout;
    }
    if p.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
        return Wait::HangUp;
    }
    if p.revents & libc::POLLIN != 0 {
        // Readable with nothing to read is end of file: the other side is gone.
        let mut queued: libc::c_int = 0;
        // SAFETY: FIONREAD writes one c_int.
        let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut queued) };
        if rc == 0 && queued == 0 {
            return Wait::HangUp;
        }
        return Wait::Ready;
    }
    Wait::Timeout
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe() -> (RawFd, RawFd) {
        let mut fds = [0; 2];
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        (fds[0], fds[1])
    }

    #[test]
    fn an_open_quiet_pipe_times_out() {
        let (r, w) = pipe();
        assert_eq!(wait(r, Duration::from_millis(20)), Wait::Timeout);
        unsafe {
            libc::close(r);
            libc::close(w);
        }
    }

    #[test]
    fn data_is_ready() {
        let (r, w) = pipe();
        assert_eq!(unsafe { libc::write(w, b"a".as_ptr().cast(), 1) }, 1);
        assert_eq!(wait(r, Duration::from_millis(20)), Wait::Ready);
        unsafe {
            libc::close(r);
            libc::close(w);
        }
    }

    #[test]
    fn a_closed_writer_is_a_hang_up() {
        let (r, w) = pipe();
        unsafe { libc::close(w) };
        assert_eq!(wait(r, Duration::from_millis(20)), Wait::HangUp);
        unsafe { libc::close(r) };
    }

    #[test]
    fn a_closed_pty_master_is_a_hang_up() {
        unsafe {
            let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
            assert!(master >= 0);
            assert_eq!(libc::grantpt(master), 0);
            assert_eq!(libc::unlockpt(master), 0);
            let name = libc::ptsname(master);
            assert!(!name.is_null());
            let slave = libc::open(name, libc::O_RDWR | libc::O_NOCTTY);
            assert!(slave >= 0);
            assert_eq!(wait(slave, Duration::from_millis(20)), Wait::Timeout);
            libc::close(master);
            assert_eq!(wait(slave, Duration::from_millis(20)), Wait::HangUp);
            libc::close(slave);
        }
    }
}

import Foundation

/// Waits for SIGINT or SIGTERM. The handler only writes a byte to a pipe (async-signal-safe), so
/// it does not matter which thread the kernel picks to run it, and the waiting thread sees the
/// signal by reading the pipe.
public enum SignalWaiter {
    nonisolated(unsafe) private static var writeFD: Int32 = -1
    nonisolated(unsafe) private static var readFD: Int32 = -1

    /// Installs the handlers. Call once, early.
    public static func install(_ signals: [Int32] = [SIGINT, SIGTERM]) {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { return }
        readFD = fds[0]
        writeFD = fds[1]
        _ = fcntl(writeFD, F_SETFL, O_NONBLOCK)
        _ = fcntl(readFD, F_SETFD, FD_CLOEXEC)
        _ = fcntl(writeFD, F_SETFD, FD_CLOEXEC)
        for s in signals {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { sig in
                var b = UInt8(truncatingIfNeeded: sig)
                _ = write(SignalWaiter.writeFD, &b, 1)
            }
            sigemptyset(&action.sa_mask)
            action.sa_flags = SA_RESTART
            sigaction(s, &action, nil)
        }
        signal(SIGPIPE, SIG_IGN)
    }

    /// Blocks until a signal arrives (returns it) or `timeout` passes (returns nil).
    public static func wait(timeout: Duration) -> Int32? {
        var p = pollfd(fd: readFD, events: Int16(POLLIN), revents: 0)
        let ms = Int32(clamping: timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        guard poll(&p, 1, ms) > 0 else { return nil }
        var b: UInt8 = 0
        guard read(readFD, &b, 1) == 1 else { return nil }
        return Int32(b)
    }
}

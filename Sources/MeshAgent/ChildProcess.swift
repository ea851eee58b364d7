import CMeshSystem
import Foundation
import Synchronization

/// A child process started with `posix_spawn`, waited for through a pidfd (no polling loop, unlike
/// Foundation's `Process.waitUntilExit` on Linux), and signalled through the pidfd so a signal can
/// never reach a later process that reused the pid.
public final class ChildProcess: Sendable {
    /// How a process ended.
    public enum Termination: Sendable, Equatable, CustomStringConvertible {
        case exited(Int32)
        case signalled(Int32)

        public var description: String {
            switch self {
            case .exited(let c): "exited with status \(c)"
            case .signalled(let s): "killed by signal \(s)"
            }
        }
    }

    public let pid: pid_t
    private let pidfd: Int32
    private let ended = Mutex<Termination?>(nil)

    private init(pid: pid_t, pidfd: Int32) {
        self.pid = pid
        self.pidfd = pidfd
    }

    deinit { close(pidfd) }

    /// Starts `executable` with `arguments`. stdin is /dev/null; stdout and stderr are appended to
    /// the given files, or inherited. With `newSession`, the child leads its own session and process
    /// group, so `signalGroup` reaches everything it forks. Without `environment` the child gets
    /// this process's, less `MESH_TOKEN`: a join token (the cluster secret) reaches a child only
    /// when given on purpose (a scale_up command's).
    public static func spawn(
        _ executable: String, _ arguments: [String], environment: [String: String]? = nil,
        stdout: String? = nil, stderr: String? = nil, newSession: Bool = true
    ) throws -> ChildProcess {
        let env = environment ?? ProcessInfo.processInfo.environment.filter { $0.key != "MESH_TOKEN" }
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let rc = mesh_spawn(&pid, executable, argv, envp, stdout, stderr, newSession ? 1 : 0)
        guard rc == 0 else {
            throw SpawnError(executable: executable, errno: rc)
        }
        let fd = mesh_pidfd_open(pid)
        guard fd >= 0 else {
            let e = errno
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            throw SpawnError(executable: executable, errno: e)
        }
        return ChildProcess(pid: pid, pidfd: fd)
    }

    /// Sends `signal` to the process (not its children), unless it has already been reaped.
    public func signal(_ signal: Int32) {
        guard ended.withLock({ $0 }) == nil else { return }
        _ = mesh_pidfd_send_signal(pidfd, signal)
    }

    /// Sends `signal` to the process group the child leads (with `newSession`).
    public func signalGroup(_ signal: Int32) {
        guard ended.withLock({ $0 }) == nil else { return }
        kill(-pid, signal)
    }

    /// Waits until the process ends (nil timeout: for ever) and reaps it; nil if it is still running.
    @discardableResult
    public func wait(timeout: Duration? = nil) -> Termination? {
        if let t = ended.withLock({ $0 }) { return t }
        var p = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
        let ms: Int32 = timeout.map { d in
            let (s, atto) = d.components
            return Int32(clamping: s * 1000 + (atto + 999_999_999_999_999) / 1_000_000_000_000_000)
        } ?? -1
        var rc: Int32
        repeat { rc = poll(&p, 1, ms) } while rc < 0 && errno == EINTR
        guard rc > 0 else { return nil }
        return reap()
    }

    /// Whether the process is still running (reaping it if it has ended).
    public var isRunning: Bool { wait(timeout: .zero) == nil }

    /// SIGTERM, then SIGKILL if it has not ended after `grace`.
    @discardableResult
    public func terminate(grace: Duration = .seconds(5)) -> Termination {
        signal(SIGTERM)
        if let t = wait(timeout: grace) { return t }
        signal(SIGKILL)
        return wait()!
    }

    private func reap() -> Termination? {
        ended.withLock { ended in
            if let t = ended { return t }
            var status: Int32 = 0
            var rc: pid_t
            repeat { rc = waitpid(pid, &status, WNOHANG) } while rc < 0 && errno == EINTR
            guard rc == pid else { return nil }
            // WIFEXITED / WEXITSTATUS / WTERMSIG are macros Swift does not import.
            let t: Termination = (status & 0x7f) == 0 ? .exited((status >> 8) & 0xff) : .signalled(status & 0x7f)
            ended = t
            return t
        }
    }
}

public struct SpawnError: Error, CustomStringConvertible {
    public var executable: String
    public var errno: Int32
    public var description: String { "cannot start \(executable): \(String(cString: strerror(errno)))" }
}

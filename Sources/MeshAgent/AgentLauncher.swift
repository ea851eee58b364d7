import Foundation
import MeshTransport

/// Starts and stops the agent of a data directory as a background process: its own session (so
/// it outlives the terminal), output appended to `agent.log`, pid in `agent.pid`.
public enum AgentLauncher {
    /// This program, to start again as `mesh agent`.
    public static var executable: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    /// The pid of the agent running on `dir`, or nil if none is (its lock is free).
    public static func runningAgent(_ dir: DataDirectory) -> Int32? { dir.lockHolder() }

    /// Starts `mesh agent --data-dir DIR ARGS…` in the background and waits until it listens.
    public static func start(_ dir: DataDirectory, arguments: [String], timeout: Duration = .seconds(15)) throws(LaunchError) -> (pid: Int32, address: AgentAddress) {
        if let pid = runningAgent(dir) { throw .alreadyRunning(dir.path, pid) }
        // A file left by an agent that was killed would look like a fresh one.
        unlink(dir.endpointFile)
        let process: ChildProcess
        do {
            process = try ChildProcess.spawn(
                executable, ["agent", "--data-dir", dir.path] + arguments, stdout: dir.logFile, stderr: dir.logFile, newSession: true)
        } catch {
            throw .spawn("\(error)")
        }
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let text = try? String(contentsOfFile: dir.endpointFile, encoding: .utf8), text.hasSuffix("\n"),
               let address = AgentAddress(endpoint: text.trimmingCharacters(in: .whitespacesAndNewlines)) {
                return (process.pid, address)
            }
            if let ended = process.wait(timeout: .milliseconds(20)) {
                throw .exited(ended, logTail(dir))
            }
        }
        process.terminate(grace: .seconds(2))
        throw .timedOut(logTail(dir))
    }

    /// Stops the agent of `dir` (SIGTERM, then SIGKILL after `grace`) and waits until its lock is
    /// free. Returns false if no agent was running.
    @discardableResult
    public static func stop(_ dir: DataDirectory, grace: Duration = .seconds(10)) -> Bool {
        guard let pid = runningAgent(dir), pid > 0 else { return false }
        kill(pid, SIGTERM)
        if waitUntilStopped(dir, timeout: grace) { return true }
        kill(pid, SIGKILL)
        return waitUntilStopped(dir, timeout: .seconds(5))
    }

    /// Waits until no agent holds the directory's lock.
    public static func waitUntilStopped(_ dir: DataDirectory, timeout: Duration) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if runningAgent(dir) == nil { return true }
            usleep(20_000)
        }
        return runningAgent(dir) == nil
    }

    /// The last lines of the agent's log, to show why it did not start.
    public static func logTail(_ dir: DataDirectory, lines: Int = 8) -> String {
        guard let text = try? String(contentsOfFile: dir.logFile, encoding: .utf8) else { return "" }
        return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }
}

public enum LaunchError: UserFacingError, Equatable {
    case alreadyRunning(String, Int32)
    case spawn(String)
    case exited(ChildProcess.Termination, String)
    case timedOut(String)

    public var exitCode: Int32 { ExitStatus.error }

    public var description: String {
        switch self {
        case .alreadyRunning(let dir, let pid):
            "an agent is already running with data directory \(dir) (pid \(pid)); `mesh status` shows it, `mesh leave` stops it"
        case .spawn(let why): "cannot start the agent: \(why)"
        case .exited(let t, let log): "the agent \(t) before it was listening:\n\(log)"
        case .timedOut(let log): "the agent did not start listening in time:\n\(log)"
        }
    }
}

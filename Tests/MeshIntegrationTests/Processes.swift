import Foundation
import MeshAgent
import MeshTestSupport

/// The result of running one `mesh` command to its end.
struct CommandResult: CustomStringConvertible {
    var status: ChildProcess.Termination
    var stdout: String
    var stderr: String
    var elapsed: Duration

    var exitCode: Int32? { if case .exited(let c) = status { c } else { nil } }
    var description: String { "\(status)\n--- stdout\n\(stdout)--- stderr\n\(stderr)" }
}

/// A scratch area for one test: data directories, logs, and every process it starts, which
/// `cleanUp()` stops by pid.
final class Scratch: @unchecked Sendable {
    let dir: TemporaryDirectory
    private var agents: [ChildProcess] = []
    private var counter = 0
    private let lock = NSLock()

    init() throws { dir = try TemporaryDirectory("mi") }

    /// Runs `mesh ARGS` to completion (killing it after `timeout`).
    func mesh(_ args: [String], timeout: Duration = .seconds(30)) throws -> CommandResult {
        let n = lock.withLock { counter += 1; return counter }
        let out = dir.sub("cmd\(n).out"), err = dir.sub("cmd\(n).err")
        let started = ContinuousClock.now
        let p = try ChildProcess.spawn(MeshBinary.path, args, stdout: out, stderr: err)
        let status = p.wait(timeout: timeout) ?? p.terminate(grace: .seconds(1))
        let elapsed = ContinuousClock.now - started
        return CommandResult(
            status: status,
            stdout: (try? String(contentsOfFile: out, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOfFile: err, encoding: .utf8)) ?? "",
            elapsed: elapsed)
    }

    /// `mesh init` in a fresh data directory (with another one's key if given); returns its path.
    func initMesh(_ name: String, keyFrom other: String? = nil) throws -> String {
        let d = dir.sub(name)
        var args = ["init", "--data-dir", d]
        if let other { args += ["--key", other + "/cluster.key"] }
        let r = try mesh(args)
        guard r.exitCode == 0 else { throw Failure("mesh init failed: \(r)") }
        return d
    }

    /// Starts `mesh agent` on a free loopback port and waits for it to publish its endpoint.
    func startAgent(_ dataDir: String, name: String, extra: [String] = []) throws -> AgentProcess {
        let log = dataDir + ".log"
        let p = try ChildProcess.spawn(
            MeshBinary.path, ["agent", "--data-dir", dataDir, "--name", name, "--listen", "127.0.0.1:0"] + extra,
            stdout: log, stderr: log)
        lock.withLock { agents.append(p) }
        let endpointFile = dataDir + "/agent.endpoint"
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            if let text = try? String(contentsOfFile: endpointFile, encoding: .utf8), text.hasSuffix("\n") {
                let endpoint = text.trimmingCharacters(in: .whitespacesAndNewlines)
                return AgentProcess(process: p, dataDir: dataDir, address: String(endpoint.dropFirst("tcp://".count)), log: log)
            }
            if let t = p.wait(timeout: .milliseconds(10)) {
                throw Failure("agent \(name) exited (\(t)) before listening:\n\((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
            }
        }
        throw Failure("agent \(name) did not start listening within 20 s")
    }

    func cleanUp() {
        for p in lock.withLock({ agents }) { p.terminate(grace: .seconds(2)) }
        dir.remove()
    }
}

struct AgentProcess {
    let process: ChildProcess
    let dataDir: String
    /// 127.0.0.1:PORT
    let address: String
    let log: String

    var logText: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
}

struct Failure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

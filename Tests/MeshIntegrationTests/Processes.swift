import Foundation
import MeshAgent
import MeshTestSupport
import MeshTransport
import MeshWire

/// The result of running one `mesh` command to its end.
struct CommandResult: CustomStringConvertible {
    var status: ChildProcess.Termination
    var stdout: String
    var stderr: String
    var elapsed: Duration

    var exitCode: Int32? { if case .exited(let c) = status { c } else { nil } }
    var description: String { "\(status)\n--- stdout\n\(stdout)--- stderr\n\(stderr)" }
}

/// A scratch area for one test: data directories, logs, and every agent it starts, which
/// `cleanUp()` stops by pid (foreground ones it holds, background ones from their agent.pid).
final class Scratch: @unchecked Sendable {
    let dir: TemporaryDirectory
    private var agents: [(process: ChildProcess, log: String)] = []
    private var counter = 0
    private let lock = NSLock()

    init() throws { dir = try TemporaryDirectory("mi") }

    /// Runs `mesh ARGS` to completion (killing it after `timeout`).
    func mesh(_ args: [String], environment: [String: String]? = nil, timeout: Duration = .seconds(60)) throws -> CommandResult {
        let n = lock.withLock { counter += 1; return counter }
        let out = dir.sub("cmd\(n).out"), err = dir.sub("cmd\(n).err")
        let started = ContinuousClock.now
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment ?? [:] { env[k] = v }
        let p = try ChildProcess.spawn(MeshBinary.path, args, environment: env, stdout: out, stderr: err)
        let status = p.wait(timeout: timeout) ?? p.terminate(grace: .seconds(1))
        let elapsed = ContinuousClock.now - started
        return CommandResult(
            status: status,
            stdout: (try? String(contentsOfFile: out, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOfFile: err, encoding: .utf8)) ?? "",
            elapsed: elapsed)
    }

    /// A data directory with the given (or a new) cluster key, and no agent.
    func dataDirectory(_ name: String, secret: ClusterSecret? = nil) throws -> String {
        let d = DataDirectory(path: dir.sub(name))
        _ = try MeshSetup.initialise(d, existingKey: secret?.text)
        return d.path
    }

    func secret(of dataDir: String) throws -> ClusterSecret { try DataDirectory(path: dataDir).readKey() }

    /// Starts `mesh agent` in the foreground (held by this test) on a free loopback port, and waits
    /// for it to publish its endpoint.
    func startAgent(_ dataDir: String, name: String, join seeds: [String] = [], extra: [String] = [],
                    environment: [String: String]? = nil, binary: String = MeshBinary.path) throws -> AgentProcess {
        let log = dataDir + ".log"
        unlink(dataDir + "/agent.endpoint")
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment ?? [:] { env[k] = v }
        let args = ["agent", "--data-dir", dataDir, "--name", name, "--listen", "127.0.0.1:0"] + seeds.flatMap { ["--join", $0] } + extra
        let p = try ChildProcess.spawn(binary, args, environment: env, stdout: log, stderr: log)
        lock.withLock { agents.append((p, log)) }
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

    /// What the agent of `dataDir` says over its local socket (nil if it does not answer).
    /// `count` agents n0…: n0 founds the mesh, the others join through it. `extra(i)` are more
    /// agent options for agent i.
    func startMesh(_ count: Int, extra: (Int) -> [String] = { _ in [] }) throws -> [AgentProcess] {
        let first = try dataDirectory("n0")
        let secret = try secret(of: first)
        var agents = [try startAgent(first, name: "n0", extra: extra(0))]
        for i in 1..<count {
            agents.append(try startAgent(try dataDirectory("n\(i)", secret: secret), name: "n\(i)", join: [agents[0].address], extra: extra(i)))
        }
        return agents
    }

    func status(_ dataDir: String) -> WireStatusReply? {
        guard let secret = try? secret(of: dataDir),
              let c = try? MeshClient(address: DataDirectory(path: dataDir).localAddress, secret: secret) else { return nil }
        defer { c.close() }
        return try? c.status(local: true, timeout: .seconds(2))
    }

    /// Polls `condition` until it holds or `timeout` passes; returns the time it took, or nil.
    func waitFor(_ timeout: Duration, every: Duration = .milliseconds(50), _ condition: () -> Bool) -> Duration? {
        let start = ContinuousClock.now
        while ContinuousClock.now - start < timeout {
            if condition() { return ContinuousClock.now - start }
            usleep(UInt32(every.components.attoseconds / 1_000_000_000_000))
        }
        return condition() ? ContinuousClock.now - start : nil
    }

    func cleanUp() {
        for (p, log) in lock.withLock({ agents }) {
            // An agent that died of anything but the signals tests send crashed: its log's end
            // (with the runtime's backtrace) goes to the test output, whatever the test checked.
            if case .signalled(let sig) = p.terminate(grace: .seconds(2)), ![SIGTERM, SIGKILL, SIGINT].contains(sig) {
                let lines = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n", omittingEmptySubsequences: false)
                let crash = lines.lastIndex { $0.contains("Program crashed") }.map { max($0 - 20, 0) } ?? max(lines.count - 80, 0)
                print("AGENT CRASHED (signal \(sig)): \(log):\n" + lines[crash...].prefix(160).joined(separator: "\n"))
            }
        }
        // Agents that `mesh init` or `mesh join` started in the background.
        let dirs = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        for d in dirs where FileManager.default.fileExists(atPath: dir.sub(d) + "/agent.pid") {
            AgentLauncher.stop(DataDirectory(path: dir.sub(d)), grace: .seconds(3))
        }
        // Supervisors and jobs outlive their agents by design: stop every process started here.
        killProcesses(under: dir.path)
        // MESH_TEST_KEEP=1 keeps the agents' logs and data directories (to read after a failure).
        if ProcessInfo.processInfo.environment["MESH_TEST_KEEP"] == "1" {
            print("kept \(dir.path)")
        } else {
            dir.remove()
        }
    }
}

/// SIGKILL to every process whose command line or working directory is under `path`.
func killProcesses(under path: String) {
    for name in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
        guard let pid = Int32(name), pid != getpid() else { continue }
        let cmdline = (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline"))).map { String(decoding: $0, as: UTF8.self) } ?? ""
        let cwd = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/cwd")) ?? ""
        if cmdline.contains(path) || cwd.hasPrefix(path) { kill(pid, SIGKILL) }
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

extension WireStatusReply {
    /// State of the member called `name`, as this agent sees it.
    func state(of name: String) -> String? {
        members.first { $0.record.meta.name == name }.map { "\(MeshCoreState($0.record.state))" }
    }

    func member(_ name: String) -> WireMemberStatus? { members.first { $0.record.meta.name == name } }

    var aliveNames: Set<String> { Set(members.filter { $0.record.state == .alive }.map(\.record.meta.name)) }
}

func MeshCoreState(_ s: WireMemberState) -> String {
    switch s {
    case .alive: "alive"
    case .suspect: "suspect"
    case .dead: "dead"
    case .left: "left"
    default: "unknown"
    }
}

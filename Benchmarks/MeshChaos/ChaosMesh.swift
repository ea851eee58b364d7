import Foundation
import MeshAgent
import MeshCore
import MeshTransport
import MeshWire

/// Five agents on 127.0.0.11–15 inside the harness's network namespace, each with its outgoing
/// connections bound to its own address, so that `iptables` on `lo` can cut any pair of them.
final class ChaosMesh: @unchecked Sendable {
    struct Agent {
        var name: String
        var address: String
        var dir: DataDirectory
        var process: ChildProcess?
        var paused = false
    }

    static let port = 7000
    let work: String
    let meshBinary: String
    let slots: Int
    let log: Log
    private var agents: [Agent]
    private let lock = NSLock()
    private(set) var secret: ClusterSecret!

    init(count: Int, work: String, meshBinary: String, slots: Int, log: Log) {
        self.work = work
        self.meshBinary = meshBinary
        self.slots = slots
        self.log = log
        agents = (1...count).map { i in
            Agent(name: "n\(i)", address: "127.0.0.\(10 + i)", dir: DataDirectory(path: "\(work)/n\(i)"))
        }
        names = agents.map(\.name)
        keyFile = agents[0].dir.keyFile
    }

    let names: [String]
    let keyFile: String
    func address(_ name: String) -> String { "\(agent(name).address):\(Self.port)" }
    private func agent(_ name: String) -> Agent { lock.withLock { agents.first { $0.name == name }! } }
    private func update(_ name: String, _ body: (inout Agent) -> Void) {
        lock.withLock { if let i = agents.firstIndex(where: { $0.name == name }) { body(&agents[i]) } }
    }

    // MARK: Processes

    func create() throws {
        let first = try MeshSetup.initialise(agents[0].dir)
        _ = first
        secret = try agents[0].dir.readKey()
        for a in agents.dropFirst() { _ = try MeshSetup.initialise(a.dir, existingKey: secret.text) }
    }

    /// Starts (or restarts) an agent and waits until it listens. The first start of every agent
    /// but the first joins through n1; a restart joins through all the others.
    func start(_ name: String, firstTime: Bool = false) throws {
        let a = agent(name)
        unlink(a.dir.endpointFile)
        var args = ["agent", "--data-dir", a.dir.path, "--name", a.name, "--listen", "\(a.address):\(Self.port)",
                    "--source", a.address, "--slots", String(slots)]
        let others = names.filter { $0 != name }
        if firstTime {
            if name != "n1" { args += ["--join", address("n1")] }
        } else {
            for o in others { args += ["--join", address(o)] }
        }
        let logFile = "\(work)/\(name).log"
        let p = try ChildProcess.spawn(meshBinary, args, stdout: logFile, stderr: logFile)
        update(name) { $0.process = p; $0.paused = false }
        let deadline = nowMillis() + 20_000
        while nowMillis() < deadline {
            if let text = try? String(contentsOfFile: a.dir.endpointFile, encoding: .utf8), text.hasSuffix("\n") { return }
            if let t = p.wait(timeout: .milliseconds(20)) {
                update(name) { $0.process = nil }
                throw HarnessError("agent \(name) exited (\(t)) before listening; see \(logFile)")
            }
        }
        p.signal(SIGKILL)
        _ = p.wait(timeout: .seconds(5))
        update(name) { $0.process = nil }
        throw HarnessError("agent \(name) did not listen within 20 s; see \(logFile)")
    }

    func kill9(_ name: String) {
        let a = agent(name)
        guard let p = a.process else { return }
        p.signal(SIGKILL)
        _ = p.wait(timeout: .seconds(5))
        update(name) { $0.process = nil; $0.paused = false }
    }

    func pause(_ name: String) {
        agent(name).process?.signal(SIGSTOP)
        update(name) { $0.paused = true }
    }

    func resume(_ name: String) {
        agent(name).process?.signal(SIGCONT)
        update(name) { $0.paused = false }
    }

    func isUp(_ name: String) -> Bool { let a = agent(name); return a.process != nil && !a.paused }
    var up: [String] { names.filter(isUp) }
    var down: [String] { names.filter { agent($0).process?.isRunning != true } }

    /// Every attempt's supervisor and job (a power loss rather than a process crash): processes in
    /// this network namespace whose command line or working directory is in an agent's attempts.
    func killJobs() -> Int {
        var n = 0
        let ours = Self.netns("self")
        let attempts = names.map { "\(work)/\($0)/attempts/" }
        for name in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(name), pid != getpid(), Self.netns(name) == ours else { continue }
            let cmdline = (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline"))).map { String(decoding: $0, as: UTF8.self) } ?? ""
            let cwd = ((try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/cwd")) ?? "") + "/"
            if attempts.contains(where: { cmdline.contains($0) || cwd.hasPrefix($0) }), kill(pid, SIGKILL) == 0 { n += 1 }
        }
        return n
    }

    /// The network namespace of a process (`self` or a pid), as the kernel names it.
    static func netns(_ pid: String) -> String? { try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/ns/net") }

    /// Stops everything it started: agents by pid, then supervisors and jobs.
    func stopAll() {
        for name in names {
            if let p = agent(name).process {
                p.signal(SIGCONT)
                p.signal(SIGKILL)
                _ = p.wait(timeout: .seconds(5))
            }
            update(name) { $0.process = nil }
        }
        _ = killJobs()
    }

    // MARK: The network

    /// Drops every packet from `a` to `b` (TCP then fails both ways, as on a real link).
    func block(from a: String, to b: String) throws {
        try iptables(["-A", "INPUT", "-s", agent(a).address, "-d", agent(b).address, "-j", "DROP"])
    }

    func cut(_ a: String, _ b: String) throws {
        try block(from: a, to: b)
        try block(from: b, to: a)
    }

    func healNetwork() throws { try iptables(["-F", "INPUT"]) }

    private func iptables(_ args: [String]) throws {
        let p = try ChildProcess.spawn(Tools.iptables, ["-w"] + args, stdout: "\(work)/iptables.log", stderr: "\(work)/iptables.log")
        guard p.wait(timeout: .seconds(20)) == .exited(0) else { throw HarnessError("iptables \(args.joined(separator: " ")) failed; see \(work)/iptables.log") }
    }

    // MARK: Asking the agents

    func client(_ name: String) -> MeshClient? {
        try? MeshClient(address: agent(name).dir.localAddress, secret: secret)
    }

    struct View {
        var name: String
        var role: String
        var term: UInt64
        var leader: UInt64
        var alive: Int
        var nodeID: UInt64
    }

    /// What a running, unpaused agent says of itself (nil if it does not answer in time).
    func view(_ name: String, timeout: Duration = .milliseconds(700)) -> View? {
        guard isUp(name), let c = client(name) else { return nil }
        defer { c.close() }
        guard let s = try? c.status(local: true, timeout: timeout) else { return nil }
        return View(name: name, role: s.coordinator.role, term: s.coordinator.term, leader: s.coordinator.leader,
                    alive: s.members.filter { $0.record.state == .alive }.count, nodeID: s.nodeID)
    }

    /// The agent that says it leads, in the highest term (nil if none does).
    func leader(among names: [String]? = nil) -> (name: String, term: UInt64)? {
        let views = (names ?? self.names).compactMap { view($0) }
        return views.filter { $0.role == "leader" }.max { $0.term < $1.term }.map { ($0.name, $0.term) }
    }

    /// The jobs as `name`'s agent has applied them.
    func jobs(_ name: String, local: Bool) -> [Job]? {
        guard let c = client(name) else { return nil }
        defer { c.close() }
        return try? c.jobs(local: local, timeout: .seconds(20))
    }

    func set(_ key: String, _ value: String) throws {
        guard let c = client("n1") else { throw HarnessError("cannot reach n1") }
        defer { c.close() }
        let (outcome, _) = try c.write(.setSetting(key: key, value: value), timeout: .seconds(20))
        guard outcome.isDone else { throw HarnessError("mesh set \(key) \(value): \(outcome.message)") }
    }
}

struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

enum Tools {
    static let ip = find("ip")
    static let iptables = find("iptables")
    static let flock = find("flock")

    static func find(_ name: String) -> String {
        for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] where FileManager.default.isExecutableFile(atPath: "\(dir)/\(name)") {
            return "\(dir)/\(name)"
        }
        return name
    }

    static func run(_ path: String, _ args: [String], timeout: Duration = .seconds(20)) -> Bool {
        guard let p = try? ChildProcess.spawn(path, args, stdout: "/dev/null", stderr: "/dev/null") else { return false }
        return p.wait(timeout: timeout) == .exited(0)
    }
}

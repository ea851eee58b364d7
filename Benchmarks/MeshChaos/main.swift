import ArgumentParser
import Foundation
import MeshAgent
import MeshCore

/// `mesh-chaos`: Jepsen-style accounting of jobs on real `mesh` processes under kill, pause and
/// partition. It creates a network namespace (`ip netns add`), runs itself inside it, and deletes
/// it at the end: five agents on 127.0.0.11–15, clients, and firewall rules all live there.
struct MeshChaos: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mesh-chaos",
        abstract: "Run a 5-agent mesh in its own network namespace under faults, and account for every job.",
        discussion: """
            Needs root (network namespaces, iptables), and `ip`, `iptables`, `flock`. Exit codes: 0 nothing \
            lost, nothing unexpected, no job ran twice at once, no stale report accepted; 1 the run saw one of \
            those; 2 the harness could not run.
            """)

    @Option(help: "short (CI, a few minutes), long (an hour), or zombie (paused workers only, long jobs).")
    var profile = "short"

    @Option(help: "Seed of the fault schedule and of the clients' choices.")
    var seed: UInt64 = 1

    @Option(help: ArgumentHelp("Seconds of faults (default: the profile's).", valueName: "SECONDS"))
    var duration: Double?

    @Option(name: .customLong("kill-grace"), help: ArgumentHelp("The mesh's kill_grace_seconds (default: the profile's).", valueName: "SECONDS"))
    var killGrace: Double?

    @Option(name: .customLong("fault"), help: ArgumentHelp("Only this kind of fault (repeatable): \(Fault.Kind.allCases.map { "\($0)" }.joined(separator: ", ")).", valueName: "KIND"))
    var faults: [String] = []

    @Flag(help: "Switch fencing off in the mesh (debug builds only): the run must then report duplicates.")
    var unfenced = false

    @Option(help: ArgumentHelp("The mesh binary (default: `mesh` beside this one).", valueName: "PATH"))
    var mesh: String?

    @Option(help: ArgumentHelp("Work directory (default: a new one under /tmp, removed after a passing run).", valueName: "DIR"))
    var work: String?

    @Flag(help: "Keep the work directory (agent logs, witness files) even after a passing run.")
    var keep = false

    @Option(help: ArgumentHelp("Also write the report as JSON here.", valueName: "FILE"))
    var json: String?

    @Flag(help: "Only the final table.")
    var quiet = false

    func validate() throws {
        guard Profile.all[profile] != nil else {
            throw ValidationError("unknown profile '\(profile)'; known: \(Profile.all.keys.sorted().joined(separator: ", "))")
        }
        if let duration, duration <= 0 { throw ValidationError("--duration must be positive") }
        for f in faults where Fault.Kind.named(f) == nil {
            throw ValidationError("unknown fault '\(f)'; known: \(Fault.Kind.allCases.map { "\($0)" }.joined(separator: ", "))")
        }
    }

    func run() throws {
        guard getuid() == 0 else { throw fail("needs root: network namespaces and iptables") }
        for (tool, package) in [(Tools.ip, "iproute2"), (Tools.iptables, "iptables"), (Tools.flock, "util-linux")]
        where !FileManager.default.isExecutableFile(atPath: tool) {
            throw fail("\(tool) not found (apt-get install \(package))")
        }
        if let ns = ProcessInfo.processInfo.environment[Self.namespaceVariable], !ns.isEmpty {
            // Firewall rules are flushed freely in there: make sure "there" is the namespace.
            guard let mine = ChaosMesh.netns("self"),
                  let inode = try? FileManager.default.attributesOfItem(atPath: "/run/netns/\(ns)")[.systemFileNumber] as? UInt64,
                  mine.contains("[\(inode)]") else {
                throw fail("\(Self.namespaceVariable)=\(ns), but this process is not in that network namespace")
            }
            do {
                throw ExitCode(try inside(namespace: ns))
            } catch let e as ExitCode {
                throw e
            } catch {
                throw fail("\(error)")
            }
        }
        throw ExitCode(try outside())
    }

    static let namespaceVariable = "MESH_CHAOS_NETNS"

    private func fail(_ message: String) -> Error {
        FileHandle.standardError.write(Data("mesh-chaos: \(message)\n".utf8))
        return ExitCode(2)
    }

    // MARK: The namespace

    /// Creates the namespace, runs this program again inside it, then kills whatever is left in
    /// it and deletes it: nothing stays behind on the host.
    private func outside() throws -> Int32 {
        let ns = "mesh-chaos-\(getpid())"
        guard Tools.run(Tools.ip, ["netns", "add", ns]) else { throw fail("ip netns add \(ns) failed") }
        defer {
            for pid in Self.pids(in: ns) { kill(pid, SIGCONT); kill(pid, SIGKILL) }
            if !Tools.run(Tools.ip, ["netns", "del", ns]) { FileHandle.standardError.write(Data("mesh-chaos: could not delete namespace \(ns)\n".utf8)) }
        }
        guard Tools.run(Tools.ip, ["-n", ns, "link", "set", "lo", "up"]) else { throw fail("cannot bring up lo in \(ns)") }
        var env = ProcessInfo.processInfo.environment
        env[Self.namespaceVariable] = ns
        let me = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let inner = try ChildProcess.spawn(Tools.ip, ["netns", "exec", ns, me] + Array(CommandLine.arguments.dropFirst()),
                                           environment: env, newSession: false)
        // Ctrl-C reaches both (same process group); a SIGTERM to us is passed on.
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        let term = DispatchSource.makeSignalSource(signal: SIGTERM, queue: .global())
        term.setEventHandler { inner.signal(SIGTERM) }
        term.resume()
        switch inner.wait() {
        case .exited(let c)?: return c
        default: return 2
        }
    }

    static func pids(in ns: String) -> [pid_t] {
        let out = "/tmp/\(ns).pids"
        defer { unlink(out) }
        guard let p = try? ChildProcess.spawn(Tools.ip, ["netns", "pids", ns], stdout: out, stderr: "/dev/null"),
              p.wait(timeout: .seconds(10)) != nil else { return [] }
        return ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").split(separator: "\n").compactMap { pid_t($0) }
    }

    // MARK: The run

    private func inside(namespace: String) throws -> Int32 {
        var profile = Profile.all[self.profile]!
        if let duration { profile.faultSeconds = duration }
        if !faults.isEmpty { profile.kinds = faults.compactMap(Fault.Kind.named) }
        if let killGrace { profile.killGraceSeconds = killGrace }
        let log = Log()
        log.quiet = quiet
        let binary = mesh ?? Self.beside("mesh")
        guard FileManager.default.isExecutableFile(atPath: binary) else { throw fail("no mesh binary at \(binary) (build it, or give --mesh)") }
        let workDir: String
        if let work {
            try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
            workDir = work
        } else {
            var template = Array("/tmp/mesh-chaos-XXXXXX".utf8CString)
            guard let p = mkdtemp(&template) else { throw fail("cannot create a work directory in /tmp") }
            workDir = String(cString: p)
        }
        let stopped = Locked(false)
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        let sources = [SIGINT, SIGTERM].map { DispatchSource.makeSignalSource(signal: $0, queue: .global()) }
        for s in sources {
            s.setEventHandler { stopped.with { $0 = true }; log.say("stopping early: healing and checking what ran so far") }
            s.resume()
        }

        log.say("namespace \(namespace), work \(workDir), mesh \(binary)")
        let chaos = ChaosMesh(count: 5, work: workDir, meshBinary: binary, slots: profile.slots, log: log)
        defer { chaos.stopAll() }
        var report = Report(seed: seed, profile: profile.name, faultSeconds: profile.faultSeconds, leaseSeconds: profile.leaseSeconds,
                            leaseGraceSeconds: profile.leaseGraceSeconds, killGraceSeconds: profile.killGraceSeconds, unfenced: unfenced)
        let nodeNames: [NodeID: String]
        do {
            nodeNames = try startMesh(chaos, profile: profile, log: log)
        } catch {
            throw HarnessError("\(error) (work directory kept: \(workDir))")
        }

        // Faults while clients submit.
        let workload = Workload(mesh: chaos, profile: profile, log: log)
        let nemesis = Nemesis(mesh: chaos, profile: profile, workload: workload, seed: seed, log: log)
        try workload.start(seed: seed)
        log.say("faults for \(Int(profile.faultSeconds)) s (\(profile.kinds.map(\.rawValue).joined(separator: ", ")))")
        nemesis.run(until: nowMillis() + profile.faultSeconds * 1000, stopped: { stopped.get })

        // Heal, stop the clients, wait for quiet, drain.
        log.say("healing everything")
        try nemesis.healAll()
        workload.finish()
        let submits = workload.submits.get
        log.say("clients stopped: \(submits.count) submits; waiting for quiet")
        let healed = nowMillis()
        _ = waitUntil(seconds: 60) {
            chaos.leader() != nil && chaos.names.allSatisfy { (chaos.view($0)?.alive ?? 0) == chaos.names.count }
        }
        let wanted = Set(submits.filter { $0.outcome != .failed }.map(\.key))
        var final: [Job] = []
        let drained = waitUntil(seconds: profile.drainSeconds, every: 1) {
            guard let l = chaos.leader(), let jobs = chaos.jobs(l.name, local: true) else { return false }
            final = jobs
            let acked = Set(submits.filter { $0.outcome == .acknowledged }.map(\.key))
            let terminal = Set(jobs.filter { $0.state.isTerminal }.map(\.spec.name))
            return acked.isSubset(of: terminal) && jobs.filter { wanted.contains($0.spec.name) }.allSatisfy { $0.state.isTerminal }
        }
        report.drainSeconds = (nowMillis() - healed) / 1000
        log.say(drained ? "drained in \(String(format: "%.1f", report.drainSeconds)) s" : "not drained within \(Int(profile.drainSeconds)) s")

        // The final state from every node, once they agree (or after 30 s).
        var perNode: [String: [Job]?] = [:]
        _ = waitUntil(seconds: 30) {
            guard let l = chaos.leader(), let jobs = chaos.jobs(l.name, local: true) else { return false }
            final = jobs
            perNode = [:]
            for n in chaos.names { perNode[n] = chaos.jobs(n, local: true) }
            let reference = Dictionary(final.map { ($0.id, $0.state) }, uniquingKeysWith: { a, _ in a })
            return perNode.values.allSatisfy { $0.map { Dictionary($0.map { ($0.id, $0.state) }, uniquingKeysWith: { a, _ in a }) } == reference }
        }
        // Runs still alive (a zombie with fencing off) write their end before the witness is read.
        sleep(seconds: 1)
        Check.analyse(into: &report, submits: submits, final: final, perNode: perNode, witness: Witness.read(workload.witness),
                      faults: nemesis.faults.get, nodeNames: nodeNames)
        print(Check.table(report))
        if let json {
            let e = JSONEncoder()
            e.outputFormatting = [.prettyPrinted, .sortedKeys]
            try e.encode(report).write(to: URL(fileURLWithPath: json))
        }
        chaos.stopAll()
        if report.passed && !keep {
            try? FileManager.default.removeItem(atPath: workDir)
        } else {
            print("  work directory (agent logs n1.log…n5.log, witness/): \(workDir)")
        }
        return report.passed ? 0 : 1
    }

    private func startMesh(_ chaos: ChaosMesh, profile: Profile, log: Log) throws -> [NodeID: String] {
        try chaos.create()
        for n in chaos.names {
            try chaos.start(n, firstTime: true)
            if n == "n1", !waitUntil(seconds: 30, { chaos.leader() != nil }) { throw HarnessError("n1 did not become coordinator") }
        }
        guard waitUntil(seconds: 60, {
            chaos.leader() != nil && chaos.names.allSatisfy { (chaos.view($0)?.alive ?? 0) == chaos.names.count }
        }) else { throw HarnessError("the 5 agents did not all see each other alive within 60 s") }
        try chaos.set("lease_seconds", String(profile.leaseSeconds))
        try chaos.set("lease_grace_seconds", String(profile.leaseGraceSeconds))
        try chaos.set("kill_grace_seconds", String(profile.killGraceSeconds))
        if unfenced {
            do {
                try chaos.set(ClusterState.unfencedSetting, "1")
            } catch {
                throw HarnessError("cannot switch fencing off (\(error)): only a debug build of mesh can")
            }
        }
        var names: [NodeID: String] = [:]
        for n in chaos.names { if let v = chaos.view(n) { names[NodeID(v.nodeID)] = n } }
        let leader = chaos.leader()
        log.say("mesh up: \(chaos.names.joined(separator: ", ")) on 127.0.0.11–15:\(ChaosMesh.port), coordinator \(leader?.name ?? "?")")
        return names
    }

    private func waitUntil(seconds: Double, every: Double = 0.1, _ condition: () -> Bool) -> Bool {
        let deadline = nowMillis() + seconds * 1000
        while nowMillis() < deadline {
            if condition() { return true }
            sleep(seconds: every)
        }
        return condition()
    }

    static func beside(_ name: String) -> String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent(name).path
    }
}

MeshChaos.main()

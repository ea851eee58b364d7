// mesh next to its peers on one machine, in one run: Slurm (single host), etcd (3 members) and
// GNU parallel, the same work on each in turn, several rounds; prints medians and ratios.
//
//   Benchmarks/run                      # installs the peers, builds, runs this in a namespace
//   Benchmarks/run --rounds 5 --only latency --only failover
//
// It refuses to run outside a network namespace with nothing but loopback: Slurm looks names up
// and binds addresses of its own choosing, and everything here must stay on 127.0.0.0/8.
import ArgumentParser
import BenchSupport
import Foundation
import MeshAgent
import MeshCore
import MeshWire

enum Section: String, CaseIterable, ExpressibleByArgument {
    case footprint, latency, throughput, failover
}

@main
struct PeerBenchmark: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "PeerBenchmark",
        abstract: "mesh against Slurm, etcd and GNU parallel on this machine (run it through Benchmarks/run)."
    )

    @Option(help: "Rounds; each runs every system's share in turn.") var rounds = 3
    @Option(help: "No-op jobs per throughput run.") var jobs = 1000
    @Option(name: .customLong("sleep-jobs"), help: "`sleep 0.1` jobs per throughput run.") var sleepJobs = 200
    @Option(help: "mesh agents (and etcd members: always 3).") var agents = 3
    @Option(help: "Slots per agent; Slurm's node and GNU parallel get agents × slots.") var slots = 2
    @Option(help: "Submit → running samples per system per round.") var samples = 10
    @Option(help: "Leader kills (and pauses) per system per round.") var failovers = 4
    @Option(name: .customLong("idle-seconds"), help: "How long idle CPU is measured.") var idleSeconds = 30
    @Option(help: "Run only these sections (repeatable): footprint, latency, throughput, failover.") var only: [Section] = []
    @Option(help: "Where the peers keep their files (default: a new folder under /tmp).") var work: String?
    @Option(help: "Also write the results as JSON to this file.") var json: String?
    @Flag(help: "Keep the work folder.") var keep = false
    @Flag(help: "Profile an extra mesh no-op run (not counted) with `perf record -a` and print where the CPU went.") var perf = false

    func validate() throws {
        for (name, value) in [("--rounds", rounds), ("--jobs", jobs), ("--sleep-jobs", sleepJobs), ("--slots", slots),
                              ("--samples", samples), ("--failovers", failovers), ("--idle-seconds", idleSeconds)] where value < 1 {
            throw ValidationError("\(name) must be at least 1, not \(value)")
        }
        // A leader killed in a mesh of fewer than 3 leaves no majority to elect another.
        guard agents >= 3 || !(only.isEmpty || only.contains(.failover)) else {
            throw ValidationError("--agents must be at least 3 for the failover section (or leave it out with --only), not \(agents)")
        }
        guard agents >= 1 else { throw ValidationError("--agents must be at least 1, not \(agents)") }
        if perf && !FileManager.default.isExecutableFile(atPath: "/usr/bin/perf") {
            throw ValidationError("--perf needs /usr/bin/perf (apt: linux-perf; Benchmarks/run installs it)")
        }
    }

    func run() throws {
        // /proc/self/net/dev lists this network namespace's interfaces (/sys/class/net would show
        // the mount namespace's).
        let dev = (try? String(contentsOfFile: "/proc/self/net/dev", encoding: .utf8)) ?? ""
        let net = dev.split(separator: "\n").dropFirst(2).compactMap { $0.split(separator: ":").first?.trimmingCharacters(in: .whitespaces) }
        guard net == ["lo"] else {
            throw ValidationError("network interfaces \(net.sorted()): run this inside a namespace with only loopback (Benchmarks/run does)")
        }
        let sections = Section.allCases.filter { only.isEmpty || only.contains($0) }
        let root = work ?? {
            var t = Array("/tmp/mesh-peers-XXXXXX".utf8CString)
            _ = mkdtemp(&t)
            return String(decoding: t.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }()
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let bench = try Bench(root: root, options: self)
        defer {
            bench.stop()
            if !keep { try? FileManager.default.removeItem(atPath: root) } else { say("kept \(root)") }
        }
        try bench.start(sections)
        bench.printSettings()
        for s in sections {
            switch s {
            case .footprint: bench.footprint()
            case .latency: try bench.latency()
            case .throughput: try bench.throughput()
            case .failover: try bench.failover()
            }
        }
        bench.report()
        if let json { try bench.writeJSON(json) }
    }
}

/// The time of the first of several concurrent tries to succeed.
final class FirstSuccess: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Int64?
    private var running = 0
    var at: Int64? { lock.withLock { value } }
    var outstanding: Int { lock.withLock { running } }
    func record(_ t: Int64) { lock.withLock { if value == nil { value = t } } }
    func begin() { lock.withLock { running += 1 } }
    func end() { lock.withLock { running -= 1 } }
}

/// One row of the final table: a measured figure per system (seconds, rates or percent); the
/// ratio mesh / peer is given against every peer in the row.
struct Row: Codable {
    var what: String
    var unit: String
    var values: [String: Double]
    var detail: String = ""
}

final class Bench {
    let root: String
    let o: PeerBenchmark
    var mesh: Agents?
    var follower = 0
    var slurm: Slurm?
    var etcd: Etcd?
    var rows: [Row] = []
    let raft = Consensus.Settings()
    var meshBinary: String { mesh!.binary }

    init(root: String, options: PeerBenchmark) throws {
        self.root = root
        o = options
    }

    func start(_ sections: [Section]) throws {
        let needSlurm = sections.contains { $0 != .failover }
        let needEtcd = sections.contains(.failover) || sections.contains(.footprint)
        say("starting: mesh (\(o.agents) agents)\(needSlurm ? ", Slurm" : "")\(needEtcd ? ", etcd (3 members)" : "") in \(root)")
        let a = try Agents(count: o.agents, extra: ["--slots", "\(o.slots)"], under: root)
        mesh = a
        guard let f = a.follower(of: o.agents) else { throw BenchError("mesh: no coordinator with \(o.agents) voters") }
        follower = f
        if needSlurm {
            slurm = try Slurm(root: root + "/slurm", cpus: o.agents * o.slots)
            try slurm!.start()
        }
        if needEtcd {
            etcd = Etcd(root: root + "/etcd", heartbeatMs: Int(raft.heartbeatInterval.seconds * 1000), electionMs: Int(raft.electionTimeoutMin.seconds * 1000))
            try etcd!.startAll()
        }
    }

    func stop() {
        mesh?.stopAll()
        slurm?.stop()
        etcd?.stopAll()
    }

    // MARK: Settings

    func printSettings() {
        let slotsTotal = o.agents * o.slots
        say("\n== settings")
        say("mesh \(version(meshBinary, ["--version"])): \(o.agents) agents on 127.0.0.1, \(o.slots) slots each (\(slotsTotal) in all); heartbeat \(Int(raft.heartbeatInterval.seconds * 1000)) ms, election timeout \(Int(raft.electionTimeoutMin.seconds * 1000))–\(Int(raft.electionTimeoutMax.seconds * 1000)) ms, pre-vote; every log entry fsynced on a majority; jobs submitted with `mesh submit --no-code` through a follower's agent")
        if let slurm {
            say("Slurm \(version("/usr/sbin/slurmctld", ["-V"])): slurmctld + slurmd + munged on 127.0.0.1, one node with CPUs=\(slurm.cpus); slurm.conf:")
            say(slurm.configuration.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n"))
        }
        if let etcd { say("etcd \(version("/usr/bin/etcd", ["--version"]).split(separator: "\n").first ?? ""): \(etcd.settings)") }
        say("GNU parallel \(version("/usr/bin/parallel", ["--version"]).split(separator: "\n").first ?? ""): `seq N | parallel -N0 -j \(slotsTotal) CMD` (-N0: the input line is not appended to CMD)")
    }

    func version(_ path: String, _ args: [String]) -> String {
        ((try? run(path, args, timeout: .seconds(20)))?.output ?? "?").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    // MARK: Footprint

    func footprint() {
        say("\n== footprint: idle for \(o.idleSeconds) s, every system started and settled")
        var procs: [(String, pid_t)] = (mesh?.processes ?? []).enumerated().compactMap { i, p in p.map { ("mesh agent n\(i)", $0.pid) } }
        for (name, p) in slurm?.processes ?? [] { if let p { procs.append((name, p.pid)) } }
        for (i, p) in (etcd?.members ?? []).enumerated() { if let p { procs.append(("etcd e\(i)", p.pid)) } }
        sleep(5)
        let before = procs.map { cpuTicksAndRSS($0.1)?.ticks ?? 0 }
        let t0 = monoNanos()
        sleep(UInt32(o.idleSeconds))
        let elapsed = monoSeconds(since: t0)
        let hz = Double(sysconf(Int32(_SC_CLK_TCK)))
        var cpu: [String: [Double]] = [:], rss: [String: [Double]] = [:]
        for (k, (name, pid)) in procs.enumerated() {
            guard let now = cpuTicksAndRSS(pid) else { continue }
            let pct = Double(now.ticks - before[k]) / hz / elapsed * 100
            let mib = Double(now.rssKB) / 1024
            say("  " + name.padding(toLength: 16, withPad: " ", startingAt: 0) + String(format: "%5.2f %% of a core, %6.1f MiB RSS", pct, mib))
            let kind = String(name.split(separator: " ").first!)
            cpu[kind, default: []].append(pct)
            rss[kind, default: []].append(mib)
        }
        func values(_ m: [String: [Double]]) -> [String: Double] {
            var v: [String: Double] = [:]
            if let x = m["mesh"].flatMap(median) { v["mesh agent"] = x }
            if let x = m["slurmd"].flatMap(median) { v["slurmd"] = x }
            if let x = m["slurmctld"].flatMap(median) { v["slurmctld"] = x }
            if let x = m["etcd"].flatMap(median) { v["etcd member"] = x }
            return v
        }
        rows.append(Row(what: "idle CPU (median per process)", unit: "%", values: values(cpu), detail: "\(o.idleSeconds) s"))
        rows.append(Row(what: "idle RSS (median per process)", unit: "MiB", values: values(rss)))
    }

    // MARK: Submit → running

    /// One sample: how long until the job's own first line ran (its clock), and until the submit
    /// command returned (nil where the command waits for the job itself).
    func latency() throws {
        let marks = root + "/marks"
        try FileManager.default.createDirectory(atPath: marks, withIntermediateDirectories: true)
        let dir = mesh!.dirs[follower]
        var running: [String: [Double]] = [:], acked: [String: [Double]] = [:]
        var n = 0
        func job(_ mark: String) -> String { "date +%s%N > \(mark)" }
        var meshJobs: [(id: JobID, t0: Int64, mark: String)] = []
        var lastSbatch = ""
        let client = try mesh!.client(follower)
        defer { client.close() }
        // Each submit returns how to wait until its job has ended (nothing where the command
        // itself waits for the job), so every sample starts on an idle system.
        let systems: [(String, (String) throws -> () throws -> Void)] = [
            ("mesh submit", { m in
                let t0 = wallNanos()
                let r = try run(self.meshBinary, ["submit", "--data-dir", dir, "--no-code", "--", "sh", "-c", job(m)])
                guard r.status == 0, let id = r.output.split(separator: " ").dropFirst(2).first.flatMap({ JobID($0) }) else {
                    throw BenchError("mesh submit: \(r.output)")
                }
                meshJobs.append((id, t0, m))
                return {
                    guard try poll(every: .milliseconds(5), timeout: .seconds(60), { try client.jobs([id]).first?.state.isTerminal == true }) else {
                        throw BenchError("mesh: job \(id) did not end")
                    }
                }
            }),
            ("Slurm sbatch", { m in
                lastSbatch = try self.slurm!.sbatch(["--wrap", job(m)])
                return {
                    guard try poll(every: .milliseconds(20), timeout: .seconds(60), { try self.slurm!.finished(lastSbatch) }) else {
                        throw BenchError("Slurm: job \(lastSbatch) did not end")
                    }
                }
            }),
            ("Slurm srun", { m in try self.slurm!.srun(["sh", "-c", job(m)]); return {} }),
            ("GNU parallel", { m in
                let r = try run("/usr/bin/parallel", ["-j", "\(self.o.agents * self.o.slots)", ":::", job(m)])
                guard r.status == 0 else { throw BenchError("parallel: \(r.output)") }
                return {}
            }),
            ("sh -c (fork+exec)", { m in _ = try run("/bin/sh", ["-c", job(m)]); return {} }),
        ]
        say("\n== submit → running: one job at a time on an idle system (the previous job ended), \(o.samples) per system per round, \(o.rounds) rounds, in a shuffled order (seeded); the job's first command reads the clock")
        var rng = SeededRandom(seed: 9)
        for round in 0..<o.rounds {
            var thisRound: [String: [Double]] = [:]
            for _ in 0..<o.samples {
                for (name, submit) in systems.shuffled(using: &rng) {
                    n += 1
                    let mark = "\(marks)/\(n)"
                    let t0 = wallNanos()
                    let ended = try submit(mark)
                    let back = seconds(since: t0)
                    guard let seen = readMark(mark) else { throw BenchError("\(name): the job never ran (mark \(mark))") }
                    running[name, default: []].append(Double(seen - t0) / 1e9)
                    thisRound[name, default: []].append(Double(seen - t0) / 1e9)
                    if name == "mesh submit" || name == "Slurm sbatch" { acked[name, default: []].append(back) }
                    try ended()
                    usleep(50_000)
                }
            }
            let line = systems.map { s in String(format: "%@ %.1f ms", s.0 as NSString, (median(thisRound[s.0] ?? []) ?? .nan) * 1000) }
            say("  round \(round + 1) medians: " + line.joined(separator: ", "))
        }
        for s in systems.map(\.0) {
            let xs = running[s] ?? []
            say("  " + s.padding(toLength: 18, withPad: " ", startingAt: 0) + String(format: " running p50 %7.1f ms  p90 %7.1f ms  (%d)%@", (median(xs) ?? .nan) * 1000,
                         (quantile(xs, 0.9) ?? .nan) * 1000, xs.count,
                         acked[s].map { String(format: "; command returned p50 %.1f ms", (median($0) ?? .nan) * 1000) as NSString } ?? ""))
        }
        try meshBreakdown(meshJobs, dir: dir)
        rows.append(Row(what: "submit → job running, p50", unit: "ms", values: running.mapValues { (median($0) ?? .nan) * 1000 },
                        detail: "\(o.samples * o.rounds) each"))
        rows.append(Row(what: "submit → acknowledged (command returns), p50", unit: "ms", values: acked.mapValues { (median($0) ?? .nan) * 1000 }))
    }

    /// Where mesh's submit → running goes: the stages its own records time (milliseconds, wall
    /// clock, all on this machine), and the start-up of the binary alone.
    func meshBreakdown(_ samples: [(id: JobID, t0: Int64, mark: String)], dir: String) throws {
        let client = try mesh!.client(follower)
        defer { client.close() }
        let jobs = Dictionary(uniqueKeysWithValues: try client.jobs(samples.map(\.id)).map { ($0.id, $0) })
        var stages: [(String, [Double])] = [
            ("`mesh submit` starts → the follower's agent has the request (start-up, handshake)", []),
            ("→ the coordinator plans the assignment (forward, submit committed on a majority)", []),
            ("→ the worker's supervisor starts the command (assignment committed and applied, `mesh supervise` started)", []),
            ("→ the job's first command ran", []),
        ]
        for s in samples {
            guard let j = jobs[s.id], let a = j.attempts.first, let started = a.startedAt, let mark = readMark(s.mark, timeout: .zero) else { continue }
            let t0 = Double(s.t0) / 1e6, m = Double(mark) / 1e6
            let points = [t0, Double(j.submittedAt), Double(a.assignedAt), Double(started), m]
            for k in 0..<4 { stages[k].1.append(points[k + 1] - points[k]) }
        }
        var startup: [Double] = []
        for _ in 0..<10 {
            let t0 = monoNanos()
            _ = try run(meshBinary, ["--version"])
            startup.append(monoSeconds(since: t0) * 1000)
        }
        say("  where mesh's time goes (medians, ms; its records are in whole milliseconds):")
        for (label, xs) in stages { say(String(format: "    %6.1f  %@", median(xs) ?? .nan, label as NSString)) }
        say(String(format: "    (the mesh binary's start-up alone, `mesh --version`: %.1f ms)", median(startup) ?? .nan))
    }

    // MARK: Throughput

    func throughput() throws {
        let slotsTotal = o.agents * o.slots
        let client = try mesh!.client(follower)
        defer { client.close() }
        let dir = mesh!.dirs[follower]
        say("\n== throughput: \(o.jobs) no-op jobs and \(o.sleepJobs) `sleep 0.1` jobs, \(slotsTotal) slots, \(o.rounds) rounds; from the submit command's start until every job has ended (mesh's sweep summary and squeue both polled every 200 ms)")
        for (label, count, command) in [("no-op", o.jobs, ["true"]), ("sleep 0.1", o.sleepJobs, ["sleep", "0.1"])] {
            var times: [String: [Double]] = [:]
            let runs: [(String, () throws -> Double)] = [
                ("mesh", {
                    let before = try client.sweeps().map(\.sweep.id).max()
                    let t0 = monoNanos()
                    let r = try run(self.meshBinary, ["submit", "--data-dir", dir, "--no-code", "-x", "\(count)", "--"] + command)
                    guard r.status == 0 else { throw BenchError("mesh submit -x: \(r.output)") }
                    guard let id = try client.sweeps().map(\.sweep.id).max(), id != before else { throw BenchError("mesh: no new sweep") }
                    var succeeded = 0
                    _ = try poll(every: .milliseconds(200), timeout: .seconds(1800)) {
                        guard let s = try client.sweeps().first(where: { $0.sweep.id == id }) else { return false }  // summaries carry the counts
                        let open = s.states.filter { JobState(rawValue: $0.key).map { !$0.isTerminal } ?? true }.values.reduce(0, +)
                        succeeded = s.states[JobState.succeeded.rawValue] ?? 0
                        return s.sweep.status == .submitted && open == 0
                    }
                    let t = monoSeconds(since: t0)
                    if succeeded != count { throw BenchError("mesh: \(succeeded) of \(count) jobs succeeded") }
                    return t
                }),
                ("Slurm", {
                    let t0 = monoNanos()
                    let id = try self.slurm!.sbatch(["--array=0-\(count - 1)", "--wrap", command.joined(separator: " ")])
                    _ = try poll(every: .milliseconds(200), timeout: .seconds(3600)) { try self.slurm!.finished(id) }
                    let t = monoSeconds(since: t0)
                    let done = try self.slurm!.completed(id)
                    if done != count { throw BenchError("Slurm: \(done) of \(count) array tasks completed") }
                    return t
                }),
                ("GNU parallel", {
                    let t0 = monoNanos()
                    let r = try run("/bin/sh", ["-c", "seq \(count) | /usr/bin/parallel -N0 -j \(slotsTotal) \(command.joined(separator: " "))"], timeout: .seconds(3600))
                    guard r.status == 0 else { throw BenchError("parallel: \(r.output)") }
                    return monoSeconds(since: t0)
                }),
            ]
            if o.perf && label == "no-op" {
                // An extra run under the profiler, not counted (perf itself costs time).
                let profiler = try startPerf()
                _ = try runs[0].1()
                reportPerf(profiler)
            }
            for round in 0..<o.rounds {
                var line: [String] = []
                for k in 0..<runs.count {
                    let (name, body) = runs[(k + round) % runs.count]
                    let t = try body()
                    times[name, default: []].append(t)
                    line.append(String(format: "%@ %.2f s (%.0f jobs/s)", name as NSString, t, Double(count) / t))
                    sleep(1)
                }
                say("  \(label) round \(round + 1): " + line.joined(separator: ", "))
            }
            let rates = times.mapValues { ts in ts.map { Double(count) / $0 } }
            for (name, ts) in times.sorted(by: { $0.key < $1.key }) {
                say(String(format: "  %@ %@: median %.2f s = %.0f jobs/s (%.2f–%.2f s)", label as NSString, name as NSString,
                             median(ts)!, median(rates[name]!)!, ts.min()!, ts.max()!))
            }
            let ideal = label == "sleep 0.1" ? String(format: "; ideal %.1f s", Double(count) * 0.1 / Double(slotsTotal)) : ""
            rows.append(Row(what: "\(count) \(label) jobs end to end", unit: "jobs/s", values: rates.mapValues { median($0)! }, detail: "\(o.rounds) rounds" + ideal))
        }
    }

    /// `perf record` of the whole machine (every process: agents, supervisors, jobs).
    func startPerf() throws -> ChildProcess {
        let p = try ChildProcess.spawn("/usr/bin/perf", ["record", "-a", "-g", "-F", "499", "-o", root + "/perf.data"],
                                       stdout: root + "/perf.out", stderr: root + "/perf.out")
        usleep(500_000)
        return p
    }

    func reportPerf(_ p: ChildProcess) {
        p.signal(SIGINT)
        _ = p.wait(timeout: .seconds(60))
        say("  perf, the whole machine during an extra mesh no-op run (not counted), share of samples:")
        let r = try? run("/usr/bin/perf", ["report", "-i", root + "/perf.data", "--stdio", "--no-children", "-g", "none", "--sort", "pid"])
        // "pid" is perf's thread: an agent's main thread has the agent's pid; its other threads
        // (mesh-io, ZMQbg) have their own ids and names. Every other thread called "mesh" is a
        // `mesh supervise` (or the one `mesh submit`).
        let agents = Set((mesh?.processes ?? []).compactMap { $0.map { String($0.pid) } })
        var share: [String: Double] = [:]
        for line in (r?.output ?? "").split(separator: "\n") where !line.hasPrefix("#") {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            guard f.count >= 2, f[0].hasSuffix("%"), let pct = Double(f[0].dropLast()) else { continue }
            let parts = f[1].split(separator: ":", maxSplits: 1)
            guard parts.count == 2 else { continue }
            let (tid, comm) = (String(parts[0]), String(parts[1]))
            let kind: String
            if comm == "mesh" { kind = agents.contains(tid) ? "agents' main threads" : "mesh supervise (one per job) and mesh submit" }
            else if comm.hasPrefix("mesh-") || comm.hasPrefix("ZMQbg") { kind = "agents' I/O and ZeroMQ threads (and the CLI's)" }
            else { kind = comm }
            share[kind, default: 0] += pct
        }
        for (kind, pct) in share.sorted(by: { $0.value > $1.value }).prefix(8) { say(String(format: "    %5.1f %%  %@", pct, kind as NSString)) }
        let dso = try? run("/usr/bin/perf", ["report", "-i", root + "/perf.data", "--stdio", "--no-children", "-g", "none", "--sort", "comm,dso", "--percent-limit", "2"])
        say("    by command and library:")
        for l in (dso?.output ?? "").split(separator: "\n").filter({ !$0.hasPrefix("#") && !$0.trimmingCharacters(in: .whitespaces).isEmpty }).prefix(12) {
            say("      " + l.trimmingCharacters(in: .whitespaces))
        }
    }

    // MARK: Failover

    func failover() throws {
        let a = mesh!, e = etcd!
        let n = o.agents
        say("\n== failover: \(n)-node mesh and 3-member etcd, kill -9 / SIGSTOP of the leader → a write acknowledged through a survivor; \(o.failovers) per system per round, \(o.rounds) rounds")
        say("  mesh: MeshClient connected to a survivor's agent, write retried until acknowledged (what `mesh submit` does; the agent holds it and forwards it to the new coordinator); etcd: a put through the JSON gateway to each survivor every 10 ms, each try kept open for up to 1 s, the first acknowledgement counts")
        /// The agent every agent names as coordinator (so a resumed old leader is never taken).
        func meshLeader() -> Int? {
            let s = (0..<n).map { a.status($0) }
            guard let named = s.first??.coordinator.leader, named != 0, s.allSatisfy({ $0?.coordinator.leader == named }) else { return nil }
            return s.firstIndex { $0?.nodeID == named }
        }
        func meshReady() -> Bool {
            (0..<n).allSatisfy { i in a.status(i).map { $0.coordinator.leader != 0 && $0.coordinator.voters.count == n } ?? false }
        }
        func meshOnce(_ signal: Int32, _ tag: Int) throws -> Double {
            guard a.wait(.seconds(60), meshReady) != nil, let l = meshLeader() else { throw BenchError("mesh: not ready") }
            let s = (l + 1) % n
            let writer = try a.client(s)
            defer { writer.close() }
            try writer.connect(timeout: .seconds(5))
            _ = try writer.write(.setSetting(key: "bench", value: "warm \(tag)"))
            let t0 = monoNanos()
            a.processes[l]!.signal(signal)
            _ = try writer.write(.setSetting(key: "bench", value: "failover \(tag)"), timeout: .seconds(60))
            let t = monoSeconds(since: t0)
            try bringBack(a.processes[l]!, after: signal) { try a.start(l) }
            return t
        }
        func etcdOnce(_ signal: Int32, _ tag: Int) throws -> Double {
            guard poll(timeout: .seconds(60), { e.leader() != nil && (0..<e.count).allSatisfy { e.status($0) != nil } }), let l = e.leader() else {
                throw BenchError("etcd: not ready")
            }
            let survivors = (0..<e.count).filter { $0 != l }
            guard e.put(survivors[0], key: "bench", value: "warm \(tag)", timeout: .seconds(5)) else { throw BenchError("etcd: warm-up write failed") }
            let t0 = monoNanos()
            e.members[l]!.signal(signal)
            // Overlapping tries: one to each survivor every 10 ms, each open for up to 1 s, so a try
            // stuck on the old leader does not hold up the next; the first acknowledgement counts.
            // A thread per try (not a dispatch queue: its pool would queue tries behind blocked ones).
            let first = FirstSuccess()
            var k = 0
            while first.at == nil {
                let target = survivors[k % survivors.count]
                k += 1
                first.begin()
                Thread.detachNewThread {
                    if e.put(target, key: "bench", value: "failover \(tag)", timeout: .seconds(1)) { first.record(monoNanos()) }
                    first.end()
                }
                usleep(5_000)
                if monoSeconds(since: t0) > 60 { throw BenchError("etcd: no write acknowledged within 60 s") }
            }
            while first.outstanding > 0 { usleep(10_000) }
            let t = Double(first.at! - t0) / 1e9
            try bringBack(e.members[l]!, after: signal) { try e.start(l) }
            return t
        }
        for (label, sig) in [("kill -9", SIGKILL), ("SIGSTOP", SIGSTOP)] {
            var times: [String: [Double]] = [:]
            var tag = 0
            for round in 0..<o.rounds {
                var thisRound: [String: [Double]] = [:]
                for i in 0..<o.failovers {
                    // Alternating who goes first.
                    let order: [(String, (Int32, Int) throws -> Double)] = [("mesh", meshOnce), ("etcd", etcdOnce)]
                    for k in 0..<order.count {
                        let (name, once) = order[(k + i + round) % order.count]
                        tag += 1
                        let t = try once(sig, tag)
                        times[name, default: []].append(t)
                        thisRound[name, default: []].append(t)
                        sleep(2)
                    }
                }
                say(String(format: "  %@ round %d medians: mesh %.0f ms, etcd %.0f ms", label as NSString, round + 1,
                             median(thisRound["mesh"]!)! * 1000, median(thisRound["etcd"]!)! * 1000))
            }
            for (name, ts) in times.sorted(by: { $0.key < $1.key }) {
                say(String(format: "  %@ of the leader, %@: p50 %.0f ms, p90 %.0f ms, max %.0f ms (%d)", label as NSString, name as NSString,
                             median(ts)! * 1000, quantile(ts, 0.9)! * 1000, ts.max()! * 1000, ts.count))
            }
            rows.append(Row(what: "\(label) of the leader → write acknowledged, p50", unit: "ms", values: times.mapValues { median($0)! * 1000 },
                            detail: "\(o.rounds * o.failovers) each"))
        }
    }

    /// The old leader back: restarted after kill -9 (same data), resumed after SIGSTOP.
    func bringBack(_ p: ChildProcess, after signal: Int32, restart: () throws -> Void) throws {
        if signal == SIGKILL {
            _ = p.wait(timeout: .seconds(5))
            try restart()
        } else {
            p.signal(SIGCONT)
        }
    }

    // MARK: Report

    func report() {
        say("\n== results (medians; ratio = mesh / the peer named, so below 1 means mesh takes less time, or, for rates, above 1 means mesh is faster)")
        say("| what | mesh | peers | ratio |")
        say("|---|---|---|---|")
        for r in rows {
            let meshKey = r.values.keys.first { $0.hasPrefix("mesh") }
            let m = meshKey.flatMap { r.values[$0] }
            let peers = r.values.filter { $0.key != meshKey }.sorted { $0.key < $1.key }.map { "\($0.key) \(format($0.value, r.unit))" }.joined(separator: ", ")
            let ratio = m.map { m in
                r.values.filter { $0.key != meshKey && $0.value > 0 }.sorted { $0.key < $1.key }
                    .map { String(format: "%.2f vs %@", m / $0.value, $0.key as NSString) }.joined(separator: ", ")
            } ?? ""
            say("| \(r.what)\(r.detail.isEmpty ? "" : " (\(r.detail))") | \(m.map { format($0, r.unit) } ?? "-") | \(peers) | \(ratio) |")
        }
    }

    func format(_ v: Double, _ unit: String) -> String {
        switch unit {
        case "ms": return String(format: v < 10 ? "%.1f ms" : "%.0f ms", v)
        case "%": return String(format: "%.2f %%", v)
        case "MiB": return String(format: "%.1f MiB", v)
        default: return String(format: "%.0f \(unit)", v)
        }
    }

    func writeJSON(_ path: String) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try enc.encode(rows).write(to: URL(fileURLWithPath: path))
    }
}

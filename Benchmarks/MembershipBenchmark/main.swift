// Membership figures: in simulation (dissemination and detection for N = 100 and 1,000, false
// positives at 10% loss), and with real `mesh agent` processes on loopback (detection after
// kill -9 and after SIGSTOP, idle traffic, CPU and RSS per agent). Medians over several runs.
//
//   swift run -c release MembershipBenchmark [sim|processes|all] [--runs N]
import Foundation
import MeshAgent
import MeshCore
import MeshSimulation
import MeshTransport
import MeshWire

let args = CommandLine.arguments.dropFirst()
let mode = args.first { !$0.hasPrefix("--") } ?? "all"
let runs = args.firstIndex(of: "--runs").flatMap { args.index(after: $0) < args.endIndex ? Int(args[args.index(after: $0)]) : nil } ?? 5

func percentiles(_ xs: [Double]) -> String {
    guard !xs.isEmpty else { return "n/a" }
    let s = xs.sorted()
    let p50 = s[s.count / 2], p99 = s[min(s.count - 1, Int(Double(s.count) * 0.99))]
    return String(format: "p50 %.2f s, p99 %.2f s (%d runs)", p50, p99, s.count)
}

// MARK: Simulation

func simulation() {
    let settings = Membership.Settings()
    print("== simulation (probe interval \(settings.probeInterval), gossip every \(settings.gossipInterval) to \(settings.gossipFanout))")
    for n in [100, 1000] {
        var dissemination: [Double] = [], detection: [Double] = [], wall: [Double] = []
        for seed in 1...UInt64(runs) {
            let start = Date()
            let sim = MembershipSimulation(nodes: n, seed: seed, recordObservations: false, start: .converged)
            sim.run(for: .seconds(2))
            // One update: node 0 publishes new metadata; until every node has it.
            let origin = sim.id(0)
            sim.updateMeta(origin) { $0.cordoned = true }
            let inc = sim.instance(origin)!.incarnation
            let t0 = sim.now
            if let t = sim.run(until: { s in s.upNodes.allSatisfy { s.instance($0)?.member(origin)?.incarnation ?? 0 >= inc } },
                               limit: .seconds(30), every: .milliseconds(20)) {
                dissemination.append((t - t0).seconds)
            }
            // One crash: until every node has it dead.
            let victim = sim.id(n / 2)
            sim.crash(victim)
            let t1 = sim.now
            if let t = sim.run(until: { s in s.upNodes.allSatisfy { s.state(of: victim, seenBy: $0) == .dead } },
                               limit: .seconds(60), every: .milliseconds(50)) {
                detection.append((t - t1).seconds)
            }
            wall.append(Date().timeIntervalSince(start))
        }
        let p50 = dissemination.sorted()[dissemination.count / 2]
        print("N=\(n): one update reaches every node: \(percentiles(dissemination)) = \(String(format: "%.1f", p50 / settings.gossipInterval.seconds)) gossip rounds, \(String(format: "%.2f", p50 / settings.probeInterval.seconds)) probe periods")
        print("N=\(n): a crashed node is dead on every node: \(percentiles(detection)); wall time per run \(String(format: "%.1f", wall.sorted()[wall.count / 2])) s")
    }
    var deaths = 0, suspicions = 0, seconds = 0.0
    for seed in 1...UInt64(max(1, runs / 2)) {
        let sim = MembershipSimulation(nodes: 100, seed: seed, faults: NetworkFaults(loss: 0.10), start: .converged)
        sim.run(for: .seconds(120))
        deaths += sim.observations.filter { $0.state == .dead }.count
        suspicions += sim.observations.filter { $0.state == .suspect }.count
        seconds += 120
    }
    print("N=100, 10% message loss, \(Int(seconds)) simulated s: \(deaths) false deaths, \(suspicions) suspicion observations (all refuted)")
}

// MARK: Real processes

final class Agents {
    let root: String
    var dirs: [String] = []
    var processes: [ChildProcess?] = []
    var addresses: [String] = []
    let binary: String

    init(count: Int) throws {
        var t = Array("/tmp/mb-XXXXXX".utf8CString)
        _ = mkdtemp(&t)
        root = String(decoding: t.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        binary = URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("mesh").path
        let secret = ClusterSecret.generate()
        for i in 0..<count {
            let d = DataDirectory(path: "\(root)/n\(i)")
            _ = try MeshSetup.initialise(d, existingKey: secret.text)
            dirs.append(d.path)
            processes.append(nil)
            addresses.append("")
            try start(i)
        }
    }

    func start(_ i: Int) throws {
        let seeds = i == 0 ? [] : ["--join", addresses[0]]
        unlink(dirs[i] + "/agent.endpoint")
        let p = try ChildProcess.spawn(binary, ["agent", "--data-dir", dirs[i], "--name", "n\(i)", "--listen", "127.0.0.1:0"] + seeds,
                                       stdout: dirs[i] + ".log", stderr: dirs[i] + ".log")
        processes[i] = p
        for _ in 0..<1000 {
            if let t = try? String(contentsOfFile: dirs[i] + "/agent.endpoint", encoding: .utf8), t.hasSuffix("\n") {
                addresses[i] = String(t.trimmingCharacters(in: .whitespacesAndNewlines).dropFirst("tcp://".count))
                return
            }
            usleep(10_000)
        }
        fatalError("agent n\(i) did not start")
    }

    func status(_ i: Int) -> WireStatusReply? {
        guard let secret = try? DataDirectory(path: dirs[i]).readKey(),
              let c = try? MeshClient(address: DataDirectory(path: dirs[i]).localAddress, secret: secret) else { return nil }
        defer { c.close() }
        return try? c.status(local: true, timeout: .seconds(2))
    }

    func state(of name: String, seenBy i: Int) -> WireMemberState? {
        status(i)?.members.first { $0.record.meta.name == name }?.record.state
    }

    func wait(_ timeout: Duration, _ condition: () -> Bool) -> Double? {
        let start = ContinuousClock.now
        while ContinuousClock.now - start < timeout {
            if condition() { return (ContinuousClock.now - start).seconds }
            usleep(10_000)
        }
        return nil
    }

    func stopAll() {
        for p in processes { p?.terminate(grace: .seconds(3)) }
        try? FileManager.default.removeItem(atPath: root)
    }
}

func cpuTicks(_ pid: Int32) -> Int {
    guard let s = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return 0 }
    let f = s.split(separator: ")").last!.split(separator: " ")
    return Int(f[11])! + Int(f[12])!
}

func rssKB(_ pid: Int32) -> Int {
    guard let s = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
          let line = s.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return 0 }
    return Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
}

func processes() throws {
    let n = 5
    print("== real processes: \(n) agents on loopback, default settings")
    let a = try Agents(count: n)
    defer { a.stopAll() }
    let names = Set((0..<n).map { "n\($0)" })
    guard a.wait(.seconds(30), { (0..<n).allSatisfy { Set(a.status($0)?.members.filter { $0.record.state == .alive }.map(\.record.meta.name) ?? []) == names } }) != nil else {
        print("did not converge"); return
    }
    // Idle: traffic, CPU and memory over 30 s.
    let before = (0..<n).map { a.status($0)! }
    let ticks0 = a.processes.map { cpuTicks($0!.pid) }
    sleep(30)
    let after = (0..<n).map { a.status($0)! }
    let ticks1 = a.processes.map { cpuTicks($0!.pid) }
    let hz = Double(sysconf(Int32(_SC_CLK_TCK)))
    let msgs = (0..<n).map { Double(after[$0].gossipSent - before[$0].gossipSent) / (after[$0].uptimeSeconds - before[$0].uptimeSeconds) }
    let cpu = (0..<n).map { Double(ticks1[$0] - ticks0[$0]) / hz / 30 * 100 }
    let rss = a.processes.map { Double(rssKB($0!.pid)) / 1024 }
    print(String(format: "idle: %.1f membership messages/s sent per agent (median), CPU %.2f%% of a core, RSS %.1f MiB",
                 msgs.sorted()[n / 2], cpu.sorted()[n / 2], rss.sorted()[n / 2]))

    // kill -9 and SIGSTOP, each followed by a restart / SIGCONT.
    var killed: [Double] = [], stopped: [Double] = []
    for round in 0..<runs {
        let v = 1 + round % (n - 1)
        let others = (0..<n).filter { $0 != v }
        a.processes[v]!.signal(SIGKILL)
        _ = a.processes[v]!.wait(timeout: .seconds(5))
        if let t = a.wait(.seconds(30), { others.allSatisfy { a.state(of: "n\(v)", seenBy: $0) == .dead } }) { killed.append(t) }
        try a.start(v)
        _ = a.wait(.seconds(30), { others.allSatisfy { a.state(of: "n\(v)", seenBy: $0) == .alive } })

        a.processes[v]!.signal(SIGSTOP)
        if let t = a.wait(.seconds(30), { others.allSatisfy { a.state(of: "n\(v)", seenBy: $0) == .dead } }) { stopped.append(t) }
        a.processes[v]!.signal(SIGCONT)
        _ = a.wait(.seconds(30), { others.allSatisfy { a.state(of: "n\(v)", seenBy: $0) == .alive } })
    }
    print("kill -9 → dead on all \(n - 1) others: \(percentiles(killed))")
    print("SIGSTOP (silent) → dead on all \(n - 1) others: \(percentiles(stopped))")
}

if mode == "sim" || mode == "all" { simulation() }
if mode == "processes" || mode == "all" { try processes() }

// Cluster figures, medians over several runs:
//   sim          membership in simulation: dissemination and detection for N = 100 and 1,000,
//                false positives at 10% loss
//   processes    membership with real agents: detection after kill -9 and SIGSTOP, idle traffic,
//                CPU and RSS per agent
//   coordinator  Raft with real agents: failover after kill -9 and SIGSTOP of the coordinator
//                (kill → new coordinator, kill → next write acknowledged), write latency through a
//                follower next to a ping of the same follower
//
//   jobs         jobs with real agents: submit → acknowledged, submit → the job's process running
//                (as the process itself records it), 1,000 no-op jobs end to end next to GNU parallel
//                running the same 1,000 commands with the same slots
//
//   plan         plans with real agents: `mesh plan` of a 10,000-job plan (two stages, held) from
//                start to acknowledged, its expansion alone (--dry-run), next to 1,000 single submits
//                (per job); and the order in which a small staged plan's jobs started
//
//   swift run -c release ClusterBenchmark [sim|processes|coordinator|jobs|plan|all] [--runs N] [--agents N]
import BenchSupport
import Foundation
import MeshAgent
import MeshCore
import MeshSimulation
import MeshTransport
import MeshWire

let args = CommandLine.arguments.dropFirst()
let mode = args.first { !$0.hasPrefix("--") } ?? "all"
func intOption(_ name: String) -> Int? {
    args.firstIndex(of: name).flatMap { args.index(after: $0) < args.endIndex ? Int(args[args.index(after: $0)]) : nil }
}
let runs = intOption("--runs") ?? 5

func percentiles(_ xs: [Double]) -> String {
    guard !xs.isEmpty else { return "n/a" }
    let s = xs.sorted()
    let p50 = s[s.count / 2], p99 = s[min(s.count - 1, Int(Double(s.count) * 0.99))]
    return String(format: "p50 %.2f s, p99 %.2f s (%d runs)", p50, p99, s.count)
}

/// Milliseconds: p50, p99 and max.
func millis(_ xs: [Double]) -> String {
    guard !xs.isEmpty else { return "n/a" }
    let s = xs.sorted()
    let p50 = s[s.count / 2], p99 = s[min(s.count - 1, Int(Double(s.count) * 0.99))]
    return String(format: "p50 %.1f ms, p99 %.1f ms, max %.1f ms (%d runs)", p50 * 1000, p99 * 1000, s.last! * 1000, s.count)
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

// MARK: Coordinator

func coordinator() throws {
    let n = intOption("--agents") ?? 3
    let raft = Consensus.Settings()
    print("== coordinator: \(n) real agents on loopback; heartbeat \(raft.heartbeatInterval), election timeout \(raft.electionTimeoutMin)–\(raft.electionTimeoutMax)")
    let a = try Agents(count: n)
    defer { a.stopAll() }
    func coordinatorOf(_ i: Int) -> UInt64? { a.status(i).map { $0.coordinator.leader }.flatMap { $0 == 0 ? nil : $0 } }
    func leaderIndex() -> Int? {
        (0..<n).first { i in a.status(i).map { $0.coordinator.leader == $0.nodeID && $0.nodeID != 0 } ?? false }
    }
    func ready() -> Bool {
        (0..<n).allSatisfy { i in a.status(i).map { $0.coordinator.leader != 0 && $0.coordinator.voters.count == n } ?? false }
    }
    guard a.wait(.seconds(60), ready) != nil else { print("no coordinator with \(n) voters"); return }

    // Writes through a follower, next to pings of the same follower (the transport's floor).
    let l0 = leaderIndex()!
    let f = (l0 + 1) % n
    let secret = try DataDirectory(path: a.dirs[f]).readKey()
    let client = try MeshClient(address: DataDirectory(path: a.dirs[f]).localAddress, secret: secret)
    var writes: [Double] = [], pings: [Double] = []
    for i in 0..<(runs * 40) {
        let t0 = ContinuousClock.now
        _ = try client.ping()
        pings.append((ContinuousClock.now - t0).seconds)
        let t1 = ContinuousClock.now
        _ = try client.write(.setSetting(key: "bench", value: "\(i)"))
        writes.append((ContinuousClock.now - t1).seconds)
    }
    client.close()
    let wp50 = writes.sorted()[writes.count / 2], pp50 = pings.sorted()[pings.count / 2]
    print("write through a follower, committed on a majority (fsync on each): \(millis(writes))")
    print("ping of the same follower (baseline): \(millis(pings)); write / ping at p50 = \(String(format: "%.1f", wp50 / pp50))")

    // Failover: kill -9 (the kernel closes the coordinator's sockets) and SIGSTOP (silence).
    for (label, signal) in [("kill -9", SIGKILL), ("SIGSTOP", SIGSTOP)] {
        var newLeader: [Double] = [], nextWrite: [Double] = []
        for round in 0..<runs {
            guard a.wait(.seconds(60), ready) != nil, let l = leaderIndex() else { print("not ready before round \(round)"); break }
            let old = a.status(l)!.nodeID
            let follower = (l + 1) % n
            let wsecret = try DataDirectory(path: a.dirs[follower]).readKey()
            let writer = try MeshClient(address: DataDirectory(path: a.dirs[follower]).localAddress, secret: wsecret)
            try writer.connect(timeout: .seconds(5))
            let others = (0..<n).filter { $0 != l }
            let t0 = ContinuousClock.now
            a.processes[l]!.signal(signal)
            // Until a survivor names a new coordinator (polled over the local sockets)…
            while !others.contains(where: { i in coordinatorOf(i).map { $0 != old } ?? false }) {
                if ContinuousClock.now - t0 > .seconds(30) { break }
            }
            newLeader.append((ContinuousClock.now - t0).seconds)
            // …then the next write through a follower, retried until acknowledged.
            _ = try writer.write(.setSetting(key: "failover", value: "\(round)"), timeout: .seconds(30))
            nextWrite.append((ContinuousClock.now - t0).seconds)
            writer.close()
            if signal == SIGKILL {
                _ = a.processes[l]!.wait(timeout: .seconds(5))
                try a.start(l)
            } else {
                a.processes[l]!.signal(SIGCONT)
            }
        }
        print("\(label) of the coordinator → a survivor names a new one: \(millis(newLeader))")
        print("\(label) of the coordinator → next write acknowledged through a follower: \(millis(nextWrite))")
    }
}

if mode == "sim" || mode == "all" { simulation() }
if mode == "processes" || mode == "all" { try processes() }
if mode == "coordinator" || mode == "all" { try coordinator() }
if mode == "jobs" || mode == "all" { try jobs() }
if mode == "plan" || mode == "all" { try plans() }

func jobs() throws {
    let n = intOption("--agents") ?? 3
    let slots = intOption("--slots") ?? 2
    let count = intOption("--jobs") ?? 1000
    print("== jobs: \(n) real agents on loopback, \(slots) slots each; GNU parallel -j \(n * slots) as the local floor")
    let a = try Agents(count: n, extra: ["--slots", "\(slots)"])
    defer { a.stopAll() }
    guard let f = a.follower(of: n) else { return print("no coordinator") }
    let client = try a.client(f)
    defer { client.close() }
    let marks = a.root + "/marks"
    try FileManager.default.createDirectory(atPath: marks, withIntermediateDirectories: true)
    // Latency: one job at a time, submitted through a follower.
    var acks: [Double] = [], running: [Double] = []
    for i in 0..<(runs * 20) {
        let mark = marks + "/\(i)"
        let t0 = wallNanos()
        let (outcome, _) = try client.write(.submit(JobSpec(command: ["sh", "-c", "date +%s%N > \(mark)"]), Provenance(), at: 0, via: NodeID(0)))
        acks.append(Double(wallNanos() - t0) / 1e9)
        guard case .created = outcome else { print("submit refused: \(outcome)"); return }
        var seen: Int64?
        for _ in 0..<5000 {
            if let t = (try? String(contentsOfFile: mark, encoding: .utf8)).flatMap({ Int64($0.trimmingCharacters(in: .whitespacesAndNewlines)) }) { seen = t; break }
            usleep(1000)
        }
        guard let seen else { print("job \(i) never ran"); return }
        running.append(Double(seen - t0) / 1e9)
        usleep(20_000)
    }
    print("submit → acknowledged (through a follower): \(millis(acks))")
    print("submit → the job's process running (its own clock reading): \(millis(running))")

    // Throughput: \(count) no-op jobs, end to end, next to GNU parallel, interleaved.
    var meshRates: [Double] = [], parallelRates: [Double] = []
    for round in 0..<runs {
        let t0 = ContinuousClock.now
        var ids: [JobID] = []
        for _ in 0..<count {
            let (outcome, _) = try client.write(.submit(JobSpec(command: ["true"]), Provenance(), at: 0, via: NodeID(0)))
            if case .created(let c, _) = outcome { ids += c }
        }
        // Wait for the end, asking about at most 100 unfinished jobs at a time (so the poll itself
        // costs the agents little).
        var open = ids[...]
        var bad = 0
        while !open.isEmpty {
            let js = (try? client.jobs(Array(open.prefix(100)))) ?? []
            let ended = js.prefix { $0.state.isTerminal }
            bad += ended.filter { $0.state != .succeeded }.count
            open = open.dropFirst(ended.count)
            if ended.count < min(100, open.count + ended.count) { usleep(50_000) }
        }
        if bad > 0 { print("round \(round): \(bad) jobs did not succeed") }
        meshRates.append(Double(count) / (ContinuousClock.now - t0).seconds)
        let p0 = ContinuousClock.now
        let p = try ChildProcess.spawn("/bin/sh", ["-c", "seq \(count) | parallel -j \(n * slots) true"], stdout: "/dev/null", stderr: "/dev/null")
        _ = p.wait(timeout: .seconds(600))
        parallelRates.append(Double(count) / (ContinuousClock.now - p0).seconds)
        print(String(format: "round %d: mesh %.0f jobs/s, GNU parallel %.0f jobs/s", round, meshRates.last!, parallelRates.last!))
    }
    let m = meshRates.sorted()[meshRates.count / 2], g = parallelRates.sorted()[parallelRates.count / 2]
    print(String(format: "%d no-op jobs end to end (median of %d): mesh %.0f jobs/s, GNU parallel %.0f jobs/s, ratio mesh/parallel %.2f", count, runs, m, g, m / g))
}

func plans() throws {
    let n = intOption("--agents") ?? 3
    let slots = intOption("--slots") ?? 2
    print("== plans: \(n) real agents on loopback, \(slots) slots each")
    let a = try Agents(count: n, extra: ["--slots", "\(slots)"])
    defer { a.stopAll() }
    guard let f = a.follower(of: n) else { return print("no coordinator") }
    let client = try a.client(f)
    defer { client.close() }
    func cli(_ args: [String]) -> (Double, Int32?) {
        let t0 = ContinuousClock.now
        let p = try? ChildProcess.spawn(a.binary, args + ["--data-dir", a.dirs[f]], stdout: a.root + "/cli.out", stderr: a.root + "/cli.err")
        let status = p?.wait(timeout: .seconds(600))
        if case .exited(let c)? = status { return ((ContinuousClock.now - t0).seconds, c) }
        return ((ContinuousClock.now - t0).seconds, nil)
    }

    // 100 × 50 combinations, two stages: 10,000 jobs, half of them waiting for the other half.
    let big = a.root + "/big.yaml"
    try """
        script: python3 train.py --a {a} --b {b} --init {init} --out {model}
        sweep:
          a: [\((0..<100).map(String.init).joined(separator: ", "))]
          b: [\((0..<50).map(String.init).joined(separator: ", "))]
          model: "m-{a}-{b}-{name}"
        stages:
          - name: pretrain
            init: scratch
          - name: finetune
            init: $(pretrain.model)
        """.write(toFile: big, atomically: true, encoding: .utf8)
    var planTimes: [Double] = [], expandTimes: [Double] = [], singleTimes: [Double] = []
    for round in 0..<runs {
        let (expand, e) = cli(["plan", big, "--no-code", "--dry-run"])
        guard e == 0 else { print("dry run failed: \((try? String(contentsOfFile: a.root + "/cli.err", encoding: .utf8)) ?? "")"); return }
        // --fresh: every round makes 10,000 new jobs (held, then cancelled, so none runs).
        let (plan, c) = cli(["plan", big, "--no-code", "--hold", "--fresh"])
        guard c == 0 else { print("plan failed: \((try? String(contentsOfFile: a.root + "/cli.err", encoding: .utf8)) ?? "")"); return }
        let latest = try client.sweeps().map(\.sweep.id).max()!
        let sweep = try client.sweeps([latest])[0].sweep
        guard sweep.jobIDs.count == 10_000 else { print("sweep \(latest) has \(sweep.jobIDs.count) jobs"); return }
        _ = try client.write(.cancel(sweep.jobIDs, reason: "benchmark", at: 0), timeout: .seconds(60))
        // The baseline: the same kind of job submitted one write at a time.
        let t0 = ContinuousClock.now
        var single: [JobID] = []
        for i in 0..<1000 {
            let (o, _) = try client.write(.submit(JobSpec(command: ["python3", "train.py", "--a", "\(i)"], held: true), Provenance(), at: 0, via: NodeID(0)))
            if case .created(let ids, _) = o { single += ids }
        }
        let perSingle = (ContinuousClock.now - t0).seconds / 1000
        _ = try client.write(.cancel(single, reason: "benchmark", at: 0), timeout: .seconds(60))
        planTimes.append(plan)
        expandTimes.append(expand)
        singleTimes.append(perSingle)
        print(String(format: "round %d: mesh plan 10,000 jobs %.2f s (expansion alone %.2f s); one submit at a time %.2f ms per job", round, plan, expand, perSingle * 1000))
    }
    let p = median(planTimes) ?? .nan, e = median(expandTimes) ?? .nan, one = median(singleTimes) ?? .nan
    print(String(format: "10,000-job plan, expand and submit (median of %d): %.2f s = %.3f ms per job (expansion and dry-run printing alone %.2f s); single submits %.2f ms per job; ratio plan/single per job %.3f",
                 runs, p, p / 10, e, one * 1000, (p / 10_000) / one))

    // The order a staged plan's jobs started in: 4 combinations × 3 stages, each job 200 ms.
    let staged = a.root + "/staged.yaml"
    try """
        script: sleep 0.2
        sweep:
          c: [0, 1, 2, 3]
        stages:
          - name: s1
          - name: s2
            from: $(s1.c)
          - name: s3
            from: $(s2.c)
        """.write(toFile: staged, atomically: true, encoding: .utf8)
    let (_, code) = cli(["plan", staged, "--no-code", "--wait"])
    guard code == 0 else { print("staged plan failed"); return }
    let latest = try client.sweeps().map(\.sweep.id).max()!
    let sweep = try client.sweeps([latest])[0].sweep
    guard sweep.jobIDs.count == 12 else { print("staged sweep has \(sweep.jobIDs.count) jobs"); return }
    let jobs = try client.jobs(sweep.jobIDs)
    let t0 = jobs.compactMap { $0.current?.startedAt }.min() ?? 0
    let byID = Dictionary(uniqueKeysWithValues: jobs.map { ($0.id, $0) })
    var violations = 0
    for j in jobs {
        for d in j.spec.after where (byID[d]?.current?.endedAt ?? .max) > (j.current?.startedAt ?? 0) { violations += 1 }
    }
    let order = jobs.sorted { ($0.current?.startedAt ?? 0, $0.id) < ($1.current?.startedAt ?? 0, $1.id) }
        .map { "\($0.spec.stage)[c=\($0.spec.parameters.first { $0.name == "c" }?.value ?? "?")]@\(($0.current?.startedAt ?? 0) - t0)ms" }
    print("staged plan (4 combinations × 3 stages, 200 ms each, \(n * slots) slots): start order \(order.joined(separator: " "))")
    print("dependencies started before their dependency ended: \(violations)")
}

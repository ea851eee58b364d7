import Foundation
import MeshCore

/// One fault the nemesis injected, and what it measured live.
struct Fault: Sendable {
    enum Kind: String, CaseIterable, Sendable {
        case killLeader = "kill -9 leader"
        case killWorker = "kill -9 worker"
        case killRandom = "kill -9 random node"
        case pauseLeader = "pause leader"
        case pauseWorker = "pause worker (zombie)"
        case isolateLeader = "isolate leader"
        case majorityMinority = "majority/minority"
        case ring = "ring"
        case sendOnly = "send, not receive"
        case crashAll = "whole-mesh crash"

        static func named(_ name: String) -> Kind? { allCases.first { "\($0)" == name || $0.rawValue == name } }
    }

    var kind: Kind
    var at: Double
    var healedAt: Double = 0
    var victims: [String] = []
    /// The leader when the fault began (and its term).
    var leader: String?
    var term: UInt64 = 0
    /// When an agent other than the victim first said it leads, in a later term.
    var newLeaderAt: Double?
    /// After a kill of the leader: when the first of the probe submits (sent one after another
    /// through the survivors from the moment of the kill) was acknowledged.
    var probeAckedAt: Double?
    /// Jobs running on the victims when the fault began (from the witness): key → node.
    var running: [String: String] = [:]
    var note = ""
}

/// Injects faults on a schedule drawn from the seed, one at a time: pick, apply, hold, heal.
final class Nemesis: @unchecked Sendable {
    let mesh: ChaosMesh
    let profile: Profile
    let workload: Workload
    let log: Log
    let faults = Locked<[Fault]>([])
    private var rng: SeededRandom
    private var probes = 0
    var witness: String { workload.witness }

    init(mesh: ChaosMesh, profile: Profile, workload: Workload, seed: UInt64, log: Log) {
        self.mesh = mesh
        self.profile = profile
        self.workload = workload
        self.log = log
        rng = SeededRandom(seed: seed)
    }

    /// Submits through the survivors, one after another, until one is acknowledged (the client's
    /// view of failover: how long until the mesh takes work again).
    private func probe(_ index: Int, survivors: [String], result: Locked<Double?>, group: DispatchGroup) {
        group.enter()
        let seed = rng.next()
        Thread { [workload] in
            defer { group.leave() }
            var rng = SeededRandom(seed: seed)
            let deadline = nowMillis() + 30_000
            var n = 0
            while nowMillis() < deadline {
                n += 1
                let s = workload.submit(key: "p\(index)-\(n)", node: rng.pick(survivors), seconds: 0.1, timeout: .seconds(5))
                if s.outcome == .acknowledged { return result.with { $0 = s.endedAt } }
            }
        }.start()
    }

    /// Until `end` (wall-clock ms) or `stop()`.
    func run(until end: Double, stopped: () -> Bool) {
        while nowMillis() < end, !stopped() {
            sleep(seconds: rng.uniform(profile.gap))
            guard nowMillis() < end, !stopped() else { break }
            let kind = rng.pick(profile.kinds)
            let hold = rng.uniform(profile.hold)
            do {
                try inject(kind, hold: hold)
            } catch {
                log.say("nemesis: \(kind.rawValue) failed: \(error); healing")
                try? healAll()
            }
        }
    }

    private func inject(_ kind: Fault.Kind, hold: Double) throws {
        var f = Fault(kind: kind, at: nowMillis())
        let current = mesh.leader()
        f.leader = current?.name
        f.term = current?.term ?? 0
        let names = mesh.names
        switch kind {
        case .killLeader, .pauseLeader, .isolateLeader:
            guard let l = current?.name else { return log.say("nemesis: \(kind.rawValue): no leader now, skipped") }
            f.victims = [l]
        case .killWorker, .pauseWorker:
            // A node with a job running on it, the coordinator only if no other has one.
            let busy = runningJobs()
            let candidates = Set(busy.values).sorted()
            let workers = candidates.filter { $0 != current?.name }
            guard let w = workers.isEmpty ? candidates.first : rng.pick(workers) else {
                return log.say("nemesis: \(kind.rawValue): no job running, skipped")
            }
            f.victims = [w]
        case .killRandom, .sendOnly:
            f.victims = [rng.pick(names)]
        case .majorityMinority:
            var shuffled = names
            shuffled.shuffle(using: &rng)
            f.victims = Array(shuffled.prefix(names.count / 2))
        case .ring, .crashAll:
            f.victims = names
        }
        f.running = runningJobs().filter { f.victims.contains($0.value) }
        f.at = nowMillis()
        let probed = Locked<Double?>(nil), probing = DispatchGroup()
        switch kind {
        case .killLeader, .killWorker, .killRandom:
            for v in f.victims { mesh.kill9(v) }
            if let l = f.leader, f.victims.contains(l) {
                probes += 1
                probe(probes, survivors: names.filter { !f.victims.contains($0) }, result: probed, group: probing)
            }
        case .pauseLeader, .pauseWorker:
            for v in f.victims { mesh.pause(v) }
        case .isolateLeader, .majorityMinority:
            let other = names.filter { !f.victims.contains($0) }
            for a in f.victims { for b in other { try mesh.cut(a, b) } }
        case .ring:
            // Each node hears only its two neighbours.
            let n = names.count
            for i in 0..<n { for j in (i + 1)..<n where j - i != 1 && !(i == 0 && j == n - 1) { try mesh.cut(names[i], names[j]) } }
        case .sendOnly:
            for o in names where o != f.victims[0] { try mesh.block(from: o, to: f.victims[0]) }
        case .crashAll:
            for v in names { mesh.kill9(v) }
            if rng.next() % 2 == 0 {
                f.note = "power loss: \(mesh.killJobs()) supervisors and jobs killed too"
            }
        }
        log.say("nemesis: \(kind.rawValue) \(f.victims.joined(separator: ",")) for \(String(format: "%.1f", hold)) s\(f.leader.map { " (leader \($0))" } ?? "")\(f.running.isEmpty ? "" : ", \(f.running.count) jobs on it")\(f.note.isEmpty ? "" : "; \(f.note)")")
        // Hold, watching for a new leader among the agents that are up.
        let until = f.at + hold * 1000
        while nowMillis() < until {
            if f.newLeaderAt == nil, kind != .crashAll, let l = mesh.leader(), l.term > f.term {
                f.newLeaderAt = nowMillis()
            }
            sleep(seconds: 0.05)
        }
        _ = probing.wait(timeout: .now() + 30)
        f.probeAckedAt = probed.get
        // Heal.
        f.healedAt = nowMillis()
        switch kind {
        case .killLeader, .killWorker, .killRandom:
            for v in f.victims { try mesh.start(v) }
        case .pauseLeader, .pauseWorker:
            for v in f.victims { mesh.resume(v) }
        case .isolateLeader, .majorityMinority, .ring, .sendOnly:
            try mesh.healNetwork()
        case .crashAll:
            for v in names { try mesh.start(v) }
            // The first leader after a whole-mesh restart.
            let deadline = nowMillis() + 30_000
            while nowMillis() < deadline {
                if mesh.leader() != nil { f.newLeaderAt = nowMillis(); break }
                sleep(seconds: 0.05)
            }
        }
        faults.with { $0.append(f) }
    }

    /// Restarts what is down, resumes what is paused, removes every firewall rule.
    func healAll() throws {
        try mesh.healNetwork()
        for n in mesh.names {
            mesh.resume(n)
            if mesh.down.contains(n) { try mesh.start(n) }
        }
    }

    /// Jobs running now according to the witness (a start and no end yet): key → node.
    func runningJobs() -> [String: String] {
        // A run killed midway never writes its end: only recent starts count.
        let recent = nowMillis() - (profile.jobSeconds.upperBound + 2) * 1000
        var out: [String: String] = [:]
        for (key, runs) in Witness.read(witness) {
            if let r = runs.last(where: { $0.end == nil && $0.start > recent }) { out[key] = r.node }
        }
        return out
    }
}

import Foundation
import MeshCore

/// The accounting of one run: what clients were told, what the witness saw run, and what every
/// node's final state says, set against each other.
struct Report: Codable {
    struct Stats: Codable {
        var count: Int
        var p50: Double
        var p95: Double
        var max: Double

        init?(_ samples: [Double]) {
            guard !samples.isEmpty else { return nil }
            let s = samples.sorted()
            func q(_ p: Double) -> Double { s[Swift.min(s.count - 1, Int((Double(s.count - 1) * p).rounded()))] }
            count = s.count
            p50 = q(0.5)
            p95 = q(0.95)
            max = s.last!
        }
    }

    var seed: UInt64
    var profile: String
    var faultSeconds: Double
    var leaseSeconds: Double
    var leaseGraceSeconds: Double
    var killGraceSeconds: Double
    var unfenced: Bool
    var attempted = 0
    var acknowledged = 0
    var submitFailed = 0
    var unknown = 0
    var completed = 0
    var jobFailed = 0
    var lost = 0
    var recovered = 0
    var unexpected = 0
    var reExecuted = 0
    var concurrentDuplicates = 0
    var staleAccepted = 0
    /// Succeeded in the mesh, but the witness never saw that attempt end.
    var phantomSuccesses = 0
    var maxSimultaneousRuns = 0
    /// Jobs whose state differs between nodes once the mesh is quiet.
    var disagreements = 0
    /// Nodes that did not give their jobs at the end.
    var unanswered = 0
    var drainSeconds = 0.0
    var faults: [String: Int] = [:]
    var failover: [String: Stats] = [:]
    var problems: [String] = []
    /// Why jobs failed and why submits ended unknown (by reason, with counts): not failures of the
    /// mesh, but worth reading.
    var notes: [String] = []

    var passed: Bool {
        lost == 0 && unexpected == 0 && concurrentDuplicates == 0 && staleAccepted == 0 && phantomSuccesses == 0 && disagreements == 0
            && unanswered == 0
    }
}

enum Check {
    static func analyse(
        into report: inout Report, submits: [Submit], final: [Job], perNode: [String: [Job]?], witness: [String: [WitnessRun]],
        faults: [Fault], nodeNames: [NodeID: String]
    ) {
        func problem(_ s: String) { if report.problems.count < 40 { report.problems.append(s) } }
        var reasons: [String: Int] = [:]
        defer { report.notes = reasons.sorted { $0.value > $1.value }.prefix(20).map { "\($0.value)× \($0.key)" } }
        var jobsByName: [String: [Job]] = [:]
        for j in final { jobsByName[j.spec.name, default: []].append(j) }

        report.attempted = submits.count
        report.acknowledged = submits.filter { $0.outcome == .acknowledged }.count
        report.submitFailed = submits.filter { $0.outcome == .failed }.count
        report.unknown = submits.filter { $0.outcome == .unknown || $0.outcome == .invoked }.count

        for s in submits {
            let jobs = jobsByName[s.key] ?? []
            let ran = !(witness[s.key] ?? []).isEmpty
            switch s.outcome {
            case .acknowledged:
                guard let j = jobs.first, j.state.isTerminal else {
                    report.lost += 1
                    problem("lost: \(s.key) (job \(s.job.map(String.init) ?? "?")) acknowledged, \(jobs.first.map { "still \($0.state.rawValue): \($0.reason)" } ?? "absent from the final state")")
                    continue
                }
                if j.state == .succeeded {
                    report.completed += 1
                } else {
                    report.jobFailed += 1
                    reasons["job \(j.state.rawValue): \(Self.general(j.reason))", default: 0] += 1
                }
            case .failed:
                if ran || !jobs.isEmpty {
                    report.unexpected += 1
                    problem("unexpected: \(s.key) was refused (\(s.detail)) but \(ran ? "ran" : "exists as job \(jobs[0].id)")")
                }
            case .unknown, .invoked:
                if ran || !jobs.isEmpty { report.recovered += 1 }
                reasons["submit unknown: \(Self.general(s.detail.split(separator: "\n").last.map(String.init) ?? "killed after 20 s"))", default: 0] += 1
            }
            if jobs.count > 1 {
                report.unexpected += jobs.count - 1
                problem("unexpected: \(s.key) was submitted once and became jobs \(jobs.map(\.id))")
            }
        }
        let known = Set(submits.map(\.key))
        for key in Set(witness.keys).union(jobsByName.keys) where !known.contains(key) {
            report.unexpected += 1
            problem("unexpected: \(key) ran or exists but no client submitted it")
        }

        for (key, runs) in witness where !runs.isEmpty {
            if runs.count > 1 { report.reExecuted += 1 }
            let most = runs.map(\.slot).max() ?? 1
            report.maxSimultaneousRuns = max(report.maxSimultaneousRuns, most)
            if most > 1 {
                report.concurrentDuplicates += 1
                problem("concurrent duplicate: \(key) had \(most) runs alive at once: \(runs.map { "attempt \($0.attempt) on \($0.node)" }.joined(separator: ", "))")
            }
            guard let job = jobsByName[key]?.first, job.state == .succeeded || job.state == .failed, let last = job.attempts.last else { continue }
            if let stale = Self.staleReport(job) {
                report.staleAccepted += 1
                problem("stale accepted: \(key) (job \(job.id)): \(stale)")
            } else if job.state == .succeeded {
                let name = nodeNames[last.node] ?? "\(last.node)"
                if !runs.contains(where: { $0.attempt == last.number && $0.node == name && $0.end != nil }) {
                    report.phantomSuccesses += 1
                    problem("phantom success: \(key) succeeded by attempt \(last.number) on \(name), which the witness never saw end")
                }
            }
        }
        for j in final where j.state == .succeeded && (witness[j.spec.name] ?? []).isEmpty {
            report.phantomSuccesses += 1
            problem("phantom success: job \(j.id) (\(j.spec.name)) succeeded but never ran")
        }

        // Every node, once quiet, has the same jobs in the same states as the coordinator (both ways).
        let reference = Dictionary(final.map { ($0.id, $0.state) }, uniquingKeysWith: { a, _ in a })
        var differing: Set<JobID> = []
        for (node, jobs) in perNode.sorted(by: { $0.key < $1.key }) {
            guard let jobs else {
                report.unanswered += 1
                problem("no answer: \(node) did not give its jobs at the end")
                continue
            }
            let mine = Dictionary(jobs.map { ($0.id, $0.state) }, uniquingKeysWith: { a, _ in a })
            for id in Set(reference.keys).union(mine.keys) where mine[id] != reference[id] {
                if differing.insert(id).inserted {
                    problem("disagreement: \(node) has job \(id) \(mine[id]?.rawValue ?? "missing"), the coordinator \(reference[id]?.rawValue ?? "missing")")
                }
            }
        }
        report.disagreements = differing.count

        // Faults and failover.
        for f in faults { report.faults[f.kind.rawValue, default: 0] += 1 }
        var samples: [String: [Double]] = [:]
        func add(_ name: String, _ v: Double?) { if let v { samples[name, default: []].append(v / 1000) } }
        for f in faults {
            let leaderHit = f.leader.map { f.victims.contains($0) } ?? false
            switch f.kind {
            case .killLeader where leaderHit, .killRandom where leaderHit:
                add("kill -9 leader → new leader", f.newLeaderAt.map { $0 - f.at })
                add("kill -9 leader → next acknowledged submit", f.probeAckedAt.map { $0 - f.at })
            case .pauseLeader:
                add("pause leader → new leader", f.newLeaderAt.map { $0 - f.at })
            case .isolateLeader:
                add("isolate leader → new leader", f.newLeaderAt.map { $0 - f.at })
            case .crashAll:
                add("whole-mesh restart → leader", f.newLeaderAt.map { $0 - f.healedAt })
            default:
                break
            }
            guard f.kind != .crashAll else { continue }
            for (key, node) in f.running {
                let elsewhere = (witness[key] ?? []).filter { $0.node != node && $0.start > f.at }.map(\.start).min()
                switch f.kind {
                case .killWorker, .killRandom: add("kill -9 worker → job running elsewhere", elsewhere.map { $0 - f.at })
                case .pauseWorker, .pauseLeader: add("pause worker → job running elsewhere", elsewhere.map { $0 - f.at })
                default: break
                }
            }
        }
        report.failover = samples.compactMapValues { Report.Stats($0) }
    }

    /// Each attempt ends once: a job whose history shows an attempt ending twice (declared lost,
    /// then its late report taken), or that ended while its last attempt never did, took a stale
    /// report. Nil if neither.
    static func staleReport(_ job: Job) -> String? {
        var endings: [Int: Int] = [:]
        for e in job.history where e.reason.hasPrefix("attempt ") {
            let rest = e.reason.dropFirst("attempt ".count)
            guard let n = Int(rest.prefix { $0.isNumber }) else { continue }
            let what = rest.drop { $0.isNumber }
            if what.hasPrefix(" started on") || what.hasPrefix(" assigned to") { continue }
            endings[n, default: 0] += 1
        }
        if let (n, count) = endings.first(where: { $0.value > 1 }) { return "attempt \(n) ended \(count) times" }
        if let last = job.attempts.last, last.outcome == nil { return "\(job.state.rawValue) while attempt \(last.number) had not ended" }
        return nil
    }

    /// A reason with its numbers taken out, so that alike reasons group.
    static func general(_ s: String) -> String {
        String(s.map { $0.isNumber ? "N" : $0 }).replacingOccurrences(of: "NN", with: "N").replacingOccurrences(of: "NN", with: "N")
    }

    static func table(_ r: Report) -> String {
        var out = "\nmesh-chaos: profile \(r.profile), seed \(r.seed), \(Int(r.faultSeconds)) s of faults, lease \(r.leaseSeconds) s + grace \(r.leaseGraceSeconds) s, kill grace \(r.killGraceSeconds) s\(r.unfenced ? ", FENCING OFF (debug)" : "")\n\n"
        let rows: [(String, Int, Bool)] = [
            ("attempted", r.attempted, false), ("acknowledged", r.acknowledged, false), ("submit refused", r.submitFailed, false),
            ("unknown (timeout, unreachable)", r.unknown, false), ("completed", r.completed, false), ("job failed", r.jobFailed, false),
            ("lost (acknowledged, never terminal)", r.lost, true), ("recovered (unknown, but ran)", r.recovered, false),
            ("unexpected (ran, never submitted)", r.unexpected, true), ("re-executed", r.reExecuted, false),
            ("concurrent duplicates", r.concurrentDuplicates, true), ("stale reports accepted", r.staleAccepted, true),
            ("phantom successes", r.phantomSuccesses, true), ("nodes disagreeing (jobs)", r.disagreements, true),
            ("nodes not answering at the end", r.unanswered, true),
            ("max simultaneous runs of one job", r.maxSimultaneousRuns, false),
        ]
        for (name, v, bad) in rows {
            out += "  \(name.padding(toLength: 38, withPad: " ", startingAt: 0)) \(String(v).leftPad(7))\(bad && v > 0 ? "   ✗" : "")\n"
        }
        out += "  \("drain (healed → all terminal)".padding(toLength: 38, withPad: " ", startingAt: 0)) \(String(format: "%7.1f", r.drainSeconds)) s\n"
        out += "\n  faults: " + r.faults.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", ") + "\n\n"
        out += "  \("failover (seconds)".padding(toLength: 44, withPad: " ", startingAt: 0))    n     p50     p95     max\n"
        for (name, s) in r.failover.sorted(by: { $0.key < $1.key }) {
            out += "  \(name.padding(toLength: 44, withPad: " ", startingAt: 0)) \(String(s.count).leftPad(4)) \(String(format: "%7.2f %7.2f %7.2f", s.p50, s.p95, s.max))\n"
        }
        if !r.notes.isEmpty {
            out += "\n  notes:\n" + r.notes.map { "  - \($0)\n" }.joined()
        }
        if !r.problems.isEmpty {
            out += "\n  problems:\n" + r.problems.map { "  - \($0)\n" }.joined()
        }
        out += "\n  \(r.passed ? "PASS: nothing lost, nothing unexpected, no job ran twice at once, no stale report accepted" : "FAIL")\n"
        return out
    }
}

extension String {
    func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: " ", count: n - count) + self }
}

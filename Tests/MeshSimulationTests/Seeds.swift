import Foundation
import MeshCore
import MeshSimulation
import Testing

/// The seeds a simulation test runs: `MESH_SIM_SEED=N` replays one, `MESH_SIM_SEEDS=K` runs K
/// (from 1), else `defaultCount` plus the regressions kept for that test.
func seeds(_ defaultCount: Int, regressions: [UInt64] = []) -> [UInt64] {
    let env = ProcessInfo.processInfo.environment
    if let one = env["MESH_SIM_SEED"].flatMap(UInt64.init) { return [one] }
    let count = env["MESH_SIM_SEEDS"].flatMap(Int.init) ?? defaultCount
    return regressions + (1...UInt64(max(1, count))).map { $0 }
}

/// Records a failure that names the seed, so it can be replayed with MESH_SIM_SEED.
func fail(_ message: String, seed: UInt64, sourceLocation: SourceLocation = #_sourceLocation) {
    Issue.record("seed \(seed): \(message) — replay with MESH_SIM_SEED=\(seed)", sourceLocation: sourceLocation)
}

extension MembershipSimulation {
    /// Every running node sees `subject` in `state`.
    func everyoneSees(_ subject: NodeID, as state: Membership.State) -> Bool {
        upNodes.allSatisfy { $0 == subject || self.state(of: subject, seenBy: $0) == state }
    }

    /// Observations of live nodes being declared dead (false positives).
    func falseDeaths(since: Instant, excluding: Set<NodeID> = []) -> [Observation] {
        observations.filter { $0.at >= since && $0.state == .dead && !excluding.contains($0.subject) }
    }
}

/// Median and 99th percentile of durations, for printed figures.
func summary(_ ds: [Duration]) -> String {
    guard !ds.isEmpty else { return "n/a" }
    let s = ds.map(\.seconds).sorted()
    let p50 = s[s.count / 2], p99 = s[min(s.count - 1, Int(Double(s.count) * 0.99))]
    return String(format: "p50 %.2f s, p99 %.2f s, max %.2f s (%d runs)", p50, p99, s.last!, s.count)
}

// Runs the deterministic simulators for any number of seeds and prints the failing ones.
//
//   swift run -c release MeshSimulator raft --seeds 10000 [--from 1]
//   swift run -c release MeshSimulator raft --seed 29 --trace
//   swift run -c release MeshSimulator jobs --seeds 1000     (Raft plus jobs, leases and fencing)
import Glibc
import MeshCore
import MeshSimulation

let args = Array(CommandLine.arguments.dropFirst())
@MainActor func option(_ name: String) -> UInt64? {
    guard let i = args.firstIndex(of: name), i + 1 < args.count else { return nil }
    return UInt64(args[i + 1])
}
let mode = args.first ?? "raft"
guard mode == "raft" || mode == "jobs" else {
    print("usage: MeshSimulator raft|jobs [--seeds N] [--from S] [--seed S --trace]")
    exit(64)
}
let traced = args.contains("--trace")
let first = option("--seed") ?? option("--from") ?? 1
let count = option("--seed") != nil ? 1 : (option("--seeds") ?? 1000)

var failing: [UInt64] = []
var acknowledged = 0, elections = 0, events = 0, attempts = 0
var jobStates: [JobState: Int] = [:]
let start = ContinuousClock.now
for seed in first..<(first + count) {
    let sim = ConsensusSimulation(seed: seed, jobs: mode == "jobs" ? .init() : nil)
    if traced { sim.trace = { print($0) } }
    sim.run()
    acknowledged += sim.acknowledged.values.map(\.count).reduce(0, +)
    attempts += sim.attemptsStarted
    jobStates.merge(sim.jobCounts, uniquingKeysWith: +)
    elections += sim.elections
    events += sim.events
    if !sim.violations.isEmpty {
        failing.append(seed)
        print("seed \(seed) [\(sim.scenario)]: \(sim.violations.prefix(3).joined(separator: "; "))")
    }
}
if mode == "jobs" {
    print("jobs: \(jobStates.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.value) \($0.key.rawValue)" }.joined(separator: ", ")); \(attempts) attempts started")
}
print("\(mode): \(count) seeds from \(first), \(failing.count) failing \(failing.prefix(20)), \(elections) elections, \(acknowledged) acknowledged writes, \(events) events, \(ContinuousClock.now - start)")
exit(failing.isEmpty ? 0 : 1)

import Benchmark
import MeshCore

/// The coordinator's once-a-second lab duties (LabControl.tick) on the scheduler's big state: 10k
/// jobs waiting for capacity with `scale_up` set (each one's wait is tracked), 10 nodes draining
/// with a deadline, 10 quarantined (a canary each is due). Compared with one scheduling pass
/// (Scheduler.plan, limit 200, as the agent runs it) on the same state: both run on the
/// coordinator's I/O thread.
func labControlBenchmarks() {
    let config = Benchmark.Configuration(
        metrics: Metrics.standard,
        warmupIterations: 1,
        maxDuration: .seconds(2),
        maxIterations: 200
    )

    Benchmark("LabControl.tick: 10k pending x 1k nodes, scale_up set, 10 draining, 10 quarantined", configuration: config) { benchmark, fx in
        // One tick a second, in place as on the coordinator: the waits are known; the canaries,
        // due at the first, are in flight.
        fx.now += .seconds(1)
        let directives = fx.lab.tick(fx.state, term: SchedulerFixture.term, ready: fx.ready, me: NodeID(1),
                                     now: fx.now, at: SchedulerFixture.at)
        benchmark.stopMeasurement()
        blackHole(directives)
    } setup: {
        LabFixture()
    }
}

/// A class, so that each iteration ticks the same instance in place (a copy would time the
/// copy-on-write of its tables instead). Only the benchmark's one thread touches it.
final class LabFixture: @unchecked Sendable {
    let state: ClusterState
    var lab = LabControl.Instance()
    let ready: Set<NodeID>
    var now = Instant(nanoseconds: 60_000_000_000)

    init() {
        var fx = SchedulerFixture()
        for (k, v) in [("scale_up", "start-a-machine"), ("scale_up_after_seconds", "30"), ("scale_up_pause_seconds", "600"),
                       ("quarantine_after", "1"), ("quarantine_canary_seconds", "30")] {
            precondition(fx.apply(.setSetting(key: k, value: v)).isDone)
        }
        let nodes = fx.state.nodes.values.filter { !$0.cordoned }.sorted { $0.id < $1.id }
        for n in nodes.prefix(10) {
            precondition(fx.apply(.drain(name: n.name, deadlineMillis: 600_000, leaving: false)).isDone)
        }
        // Ten nodes whose attempt failed to start: quarantined.
        for n in nodes.dropFirst(10).prefix(10) {
            guard case .created(let ids, _) = fx.apply(.submit(JobSpec(command: ["true"], node: n.id), Provenance(),
                                                               at: SchedulerFixture.at, via: NodeID(1))) else { preconditionFailure() }
            let a = ClusterState.Assignment(job: ids[0], attempt: 1, node: n.id, gpus: [], term: SchedulerFixture.term, at: SchedulerFixture.at)
            _ = fx.apply(.assign([a]))
            _ = fx.apply(.finished(.init(job: ids[0], attempt: 1, node: n.id, outcome: .failedToStart("no workspace"), at: SchedulerFixture.at)))
            precondition(fx.state.nodes[n.id]!.quarantined, "not quarantined")
        }
        state = fx.state
        ready = Set(state.nodes.keys)
        // The first ticks: elected (a pause first), every wait and quarantine seen; then the
        // canaries are due.
        _ = lab.tick(state, term: SchedulerFixture.term, ready: ready, me: NodeID(1), now: .zero, at: SchedulerFixture.at)
        let due = lab.tick(state, term: SchedulerFixture.term, ready: ready, me: NodeID(1), now: now, at: SchedulerFixture.at)
        precondition(due.count == 10, "expected the 10 canaries: \(due.count) directives")
    }
}

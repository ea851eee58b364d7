import Benchmark
import MeshCore

/// A replicated state as the coordinator would hold it: 1,000 registered nodes of three classes
/// with 1–8 slots and a few labels, and 10,000 pending jobs with mixed requests, every one of them
/// created by applying the same commands the log carries (register, cordon, submit).
struct SchedulerFixture: Sendable {
    var state: ClusterState
    /// What the coordinator passes the scheduler: every registered node, a few not accepting
    /// (dead in gossip or out of touch).
    var nodes: [Scheduler.Node]
    /// The log position after the fixture's commands (later commands continue from here).
    var index: Consensus.Index
    var sequence: UInt64
    /// A job submitted held: releasing it forces the copy of the job table outside a measurement.
    var heldJob: JobID
    let client = ClusterState.ClientID(1)

    static let term: UInt64 = 3
    static let at: Int64 = 1_750_000_000_000

    init(nodes nodeCount: Int = 1_000, jobs jobCount: Int = 10_000, seed: UInt64 = 42) {
        var rng = SeededRandom(seed: seed)
        state = ClusterState()
        index = 0
        sequence = 0
        heldJob = 0
        nodes = []

        let zones = ["a", "b", "c"]
        var names: [NodeID: String] = [:]
        for i in 0..<nodeCount {
            let slots = 1 + Int(rng.next() % 8)
            let kind = rng.next() % 100
            var capacity = ClusterState.Capacity(slots: slots, cpus: slots * 2, memoryMB: slots * 4_096)
            switch kind {
            case 0..<60:
                capacity.nodeClass = "cpu"
            case 60..<85:
                capacity.nodeClass = "gpu"
                capacity.gpus = 1 + Int(rng.next() % 4)
            default:
                capacity.nodeClass = "highmem"
                capacity.memoryMB = slots * 32_768
            }
            capacity.labels = ["zone": zones[i % zones.count], "arch": rng.chance(0.3) ? "arm64" : "x86_64"]
            if rng.chance(0.1) { capacity.labels["ssd"] = "true" }
            var id = NodeID(rng.next())
            while id.rawValue == 0 || names[id] != nil { id = NodeID(rng.next()) }
            let name = "node-\(i)"
            names[id] = name
            expectDone(apply(.register(id, name: name, address: "\(name).mesh.test:7946", capacity: capacity)))
        }
        // 1% cordoned by an operator.
        for i in stride(from: 7, to: nodeCount, by: 100) {
            expectDone(apply(.cordon(name: "node-\(i)", reason: "disk replacement")))
        }

        for j in 0..<jobCount {
            var spec = JobSpec(
                name: "exp-\(j)", command: ["python3", "train.py", "--seed", "\(j)"],
                priority: rng.next() % 4 == 0 ? 1 : 0, results: ["out/*.json"])
            switch rng.next() % 100 {
            case 0..<50:
                spec.resources = Resources(slots: 1)
            case 50..<70:
                spec.resources = Resources(slots: 2 + Int(rng.next() % 3), cpus: 4)
            case 70..<82:
                spec.nodeClass = "gpu"
                spec.resources = Resources(slots: 1, gpus: 1 + Int(rng.next() % 2))
            case 82..<90:
                spec.labels = ["zone": "b"]
                spec.resources = Resources(slots: 1 + Int(rng.next() % 2))
            case 90..<96:
                spec.nodeClass = "highmem"
                spec.resources = Resources(slots: 2, memoryMB: 40_000)
            default:
                spec.labels = ["arch": "arm64", "ssd": "true"]
                spec.resources = Resources(slots: 1)
            }
            expectCreated(apply(.submit(spec, Provenance(), at: Self.at, via: NodeID(1))))
        }
        if case .created(let ids, _) = apply(.submit(JobSpec(command: ["true"], held: true), Provenance(), at: Self.at, via: NodeID(1))) {
            heldJob = ids[0]
        }
        precondition(state.pendingJobs.count == jobCount, "only \(state.pendingJobs.count) of \(jobCount) jobs pending")

        // Every 50th node is dead in gossip or out of touch with the coordinator.
        var k = 0
        nodes = state.nodes.values.sorted { $0.id < $1.id }.map { n in
            k += 1
            return Scheduler.Node(id: n.id, capacity: n.capacity, accepting: k % 50 != 0)
        }
    }

    mutating func apply(_ command: ClusterState.Command) -> ClusterState.Outcome {
        index += 1
        sequence += 1
        return state.apply(ClusterState.Request(client: client, sequence: sequence, command: command), at: index)
    }

    private func expectDone(_ o: ClusterState.Outcome) {
        precondition(o.isDone, "fixture command refused: \(o.message)")
    }

    private func expectCreated(_ o: ClusterState.Outcome) {
        guard case .created = o else { preconditionFailure("fixture job refused: \(o.message)") }
    }
}

/// The fixture and a plan made on it.
struct PlannedFixture {
    var fixture: SchedulerFixture
    var plan: [ClusterState.Assignment]
}

/// The fixture and more jobs to submit into it.
struct SubmitFixture {
    var fixture: SchedulerFixture
    var commands: [ClusterState.Command]
}

func schedulerBenchmarks() {
    let config = Benchmark.Configuration(
        metrics: Metrics.standard + [Metrics.assignments, Metrics.assignmentsPerSecond],
        warmupIterations: 1,
        maxDuration: .seconds(2),
        maxIterations: 200
    )

    // One scheduling pass as the coordinator runs it: plan(...) over the replicated state. The
    // pass is pure (the state is not changed), so every iteration does the same work.
    // Without a limit every one of the 10k jobs is considered (seconds per pass): one iteration,
    // no warm-up.
    var once = config
    once.warmupIterations = 0
    once.maxIterations = 1
    for (title, limit, configuration) in [("limit 1000 (default)", 1_000, config), ("limit 200 (as MeshAgent)", 200, config), ("no limit", Int.max, once)] {
        Benchmark("Scheduler.plan: 10k pending x 1k nodes, \(title)", configuration: configuration) { benchmark, fx in
            let start = ContinuousClock.now
            let plan = Scheduler.plan(fx.state, nodes: fx.nodes, term: SchedulerFixture.term, at: SchedulerFixture.at, limit: limit)
            let elapsed = ContinuousClock.now - start
            benchmark.stopMeasurement()
            blackHole(plan)
            benchmark.measurement(Metrics.assignments, plan.count)
            benchmark.measurement(Metrics.assignmentsPerSecond, perSecond(plan.count, elapsed))
        } setup: {
            SchedulerFixture()
        }
    }

    // The other half of an assignment: the committed `.assign` entry applied to the state (on
    // every node). The plan is made once; each iteration applies it to a fresh copy of the state.
    Benchmark("ClusterState.apply(.assign): 1000 assignments, 10k pending x 1k nodes", configuration: config) { (benchmark: Benchmark, setup: PlannedFixture) in
        var fx = setup.fixture
        // Copy the state's tables now (copy-on-write), not inside the measurement.
        _ = fx.apply(.release([fx.heldJob], at: SchedulerFixture.at))
        let request = ClusterState.Request(client: fx.client, sequence: fx.sequence + 1, command: .assign(setup.plan))
        benchmark.startMeasurement()
        let start = ContinuousClock.now
        let outcome = fx.state.apply(request, at: fx.index + 1)
        let elapsed = ContinuousClock.now - start
        benchmark.stopMeasurement()
        blackHole(outcome)
        let assigned = fx.state.activeJobs.count
        if assigned != setup.plan.count { benchmark.error("only \(assigned) of \(setup.plan.count) assignments applied: \(outcome.message)") }
        benchmark.measurement(Metrics.assignments, assigned)
        benchmark.measurement(Metrics.assignmentsPerSecond, perSecond(assigned, elapsed))
    } setup: {
        let fx = SchedulerFixture()
        let plan = Scheduler.plan(fx.state, nodes: fx.nodes, term: SchedulerFixture.term, at: SchedulerFixture.at, limit: 1_000)
        return PlannedFixture(fixture: fx, plan: plan)
    }

    // Submitting into a big mesh: each submit checks that some registered node could ever run
    // the job (ClusterState.impossible) before it creates it.
    Benchmark(
        "ClusterState.apply(.submit): 1000 jobs into 1k nodes x 10k jobs",
        configuration: .init(metrics: Metrics.standard + [Metrics.submitsPerSecond], warmupIterations: 1, maxDuration: .seconds(2), maxIterations: 200)
    ) { (benchmark: Benchmark, setup: SubmitFixture) in
        var fx = setup.fixture
        _ = fx.apply(.release([fx.heldJob], at: SchedulerFixture.at))
        let first = fx.sequence + 1, at = fx.index + 1
        benchmark.startMeasurement()
        let start = ContinuousClock.now
        for (k, command) in setup.commands.enumerated() {
            blackHole(fx.state.apply(ClusterState.Request(client: fx.client, sequence: first + UInt64(k), command: command), at: at + UInt64(k)))
        }
        let elapsed = ContinuousClock.now - start
        benchmark.stopMeasurement()
        benchmark.measurement(Metrics.submitsPerSecond, perSecond(setup.commands.count, elapsed))
    } setup: {
        let fx = SchedulerFixture()
        let commands: [ClusterState.Command] = (0..<1_000).map { j in
            .submit(JobSpec(name: "more-\(j)", command: ["python3", "train.py", "--seed", "\(j)"], resources: Resources(slots: 1 + j % 2)),
                    Provenance(), at: SchedulerFixture.at, via: NodeID(1))
        }
        return SubmitFixture(fixture: fx, commands: commands)
    }
}

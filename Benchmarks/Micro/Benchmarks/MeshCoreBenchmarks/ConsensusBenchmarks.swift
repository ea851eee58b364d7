import Benchmark
import MeshCore
import MeshSimulation

/// Raft voters (MeshCore's `Consensus.Instance`) wired in memory: packets wait in one FIFO and
/// are delivered in order, each node's "disk" keeps what it is told to persist, and each node's
/// ClusterState applies what commits. Time moves only when `advance` says. No faults: this
/// measures the state machines themselves.
final class InMemoryRaft {
    private(set) var nodes: [Consensus.Instance] = []
    private let ids: [NodeID]
    private var slot: [NodeID: Int] = [:]
    private var queue: [Consensus.Packet] = []
    private var tickAt: [Instant?]
    private var disks: [Consensus.Stored]
    private(set) var states: [ClusterState]
    private(set) var now = Instant.zero
    /// Packets delivered so far.
    private(set) var delivered = 0
    private let client = ClusterState.ClientID(0xC0FFEE)
    private var sequence: UInt64 = 0
    /// What clients write: settings, so that applying costs little next to consensus.
    private let commands: [ClusterState.Command] = (0..<64).map { .setSetting(key: "key-\($0)", value: "value-\($0)") }

    init(voters: Int, seed: UInt64 = 7) {
        var rng = SeededRandom(seed: seed)
        var ids: [NodeID] = []
        while ids.count < voters {
            let id = NodeID(rng.next())
            if id.rawValue != 0 && !ids.contains(id) { ids.append(id) }
        }
        self.ids = ids
        let stored = Consensus.Stored(
            hardState: .init(term: 1),
            entries: [.init(index: 1, term: 1, payload: .configuration(Consensus.Configuration(voters: Set(ids))))])
        tickAt = Array(repeating: nil, count: voters)
        disks = Array(repeating: stored, count: voters)
        states = Array(repeating: ClusterState(), count: voters)
        for (i, id) in ids.enumerated() {
            slot[id] = i
            nodes.append(Consensus.Instance(id: id, stored: stored, settings: Consensus.Settings(), seed: rng.next(), now: now))
        }
        for i in nodes.indices { carryOut(i, nodes[i].start(now: now)) }
        // Elect a leader and let it commit its first entry everywhere.
        var steps = 0
        while leader == nil || nodes.contains(where: { $0.appliedIndex < nodes[leader!].lastIndex }) {
            advance(by: .milliseconds(10))
            steps += 1
            precondition(steps < 100_000, "no leader elected")
        }
    }

    var leader: Int? { nodes.firstIndex { $0.role == .leader } }

    /// Proposes `count` writes at the leader, `perRound` of them between network rounds (a round
    /// delivers every packet in flight, and everything those packets cause), until every node has
    /// applied them all.
    func commit(_ count: Int, perRound: Int) {
        guard let l = leader else { preconditionFailure("no leader") }
        let target = nodes[l].lastIndex + Consensus.Index(count)
        var proposed = 0
        while proposed < count {
            for _ in 0..<Swift.min(perRound, count - proposed) {
                sequence += 1
                let r = ClusterState.Request(client: client, sequence: sequence, command: commands[Int(sequence % 64)])
                guard case .success(let (_, directives)) = nodes[l].propose(r, now: now) else { preconditionFailure("proposal refused") }
                carryOut(l, directives)
                proposed += 1
            }
            advance(by: .microseconds(200))
        }
        var rounds = 0
        while nodes.contains(where: { $0.appliedIndex < target }) {
            advance(by: .microseconds(200))
            rounds += 1
            precondition(rounds < 1_000_000, "entries not applied everywhere")
        }
    }

    /// Replaces every node's log up to what it applied with a snapshot (as the agent does every
    /// so many entries), so that the log does not grow from one iteration to the next.
    func compact() {
        for i in nodes.indices {
            carryOut(i, nodes[i].compact(upTo: nodes[i].appliedIndex, data: [], now: now))
        }
        deliver()
    }

    /// Moves time on, fires the ticks that are due, and delivers every packet in flight.
    func advance(by d: Duration) {
        now += d
        for i in nodes.indices {
            if let t = tickAt[i], t <= now {
                tickAt[i] = nil
                carryOut(i, nodes[i].onTick(now: now))
            }
        }
        deliver()
    }

    private func deliver() {
        var head = 0
        while head < queue.count {
            let p = queue[head]
            head += 1
            guard let to = slot[p.to] else { continue }
            delivered += 1
            carryOut(to, nodes[to].onPacket(p, now: now))
        }
        queue.removeAll(keepingCapacity: true)
    }

    private func carryOut(_ i: Int, _ directives: [Consensus.Directive]) {
        for d in directives {
            switch d {
            case .persist(let hardState, let entries, let truncateAfter):
                if let hardState { disks[i].hardState = hardState }
                if let cut = truncateAfter { disks[i].entries.removeAll { $0.index > cut } }
                disks[i].entries += entries
            case .persistSnapshot(let s, let discardLog):
                disks[i].snapshot = s
                if discardLog {
                    disks[i].entries = []
                } else if let keep = disks[i].entries.firstIndex(where: { $0.index > s.index }) {
                    disks[i].entries.removeFirst(keep)
                } else {
                    disks[i].entries = []
                }
            case .send(let p):
                queue.append(p)
            case .apply(let entries):
                for e in entries {
                    if case .command(let r) = e.payload {
                        _ = states[i].apply(r, at: e.index)
                    } else {
                        states[i].advance(to: e.index)
                    }
                }
            case .restore:
                preconditionFailure("a node fell behind a snapshot: the benchmark's network lost something")
            case .scheduleTick(let at):
                tickAt[i] = at
            case .roleChanged, .dropped:
                break
            }
        }
    }
}

func consensusBenchmarks() {
    let config = Benchmark.Configuration(
        metrics: Metrics.standard + [Metrics.entriesPerSecond, Metrics.packets],
        warmupIterations: 2,
        maxDuration: .seconds(2),
        maxIterations: 1_000
    )

    // Consensus.Instance alone: N writes proposed at the leader, replicated, committed and applied
    // (to ClusterState) on every voter. "one per round": the next write is proposed only after a
    // network round; "pipelined": 50 proposals per round, as under load.
    let entries = 1_000
    for (voters, perRound, style) in [(3, 1, "one per round"), (3, 50, "pipelined 50 per round"), (5, 50, "pipelined 50 per round")] {
        Benchmark("Consensus: \(voters) voters commit \(entries) entries, \(style)", configuration: config) { benchmark, raft in
            raft.compact()
            let packetsBefore = raft.delivered
            benchmark.startMeasurement()
            let start = ContinuousClock.now
            raft.commit(entries, perRound: perRound)
            let elapsed = ContinuousClock.now - start
            benchmark.stopMeasurement()
            benchmark.measurement(Metrics.entriesPerSecond, perSecond(entries, elapsed))
            benchmark.measurement(Metrics.packets, raft.delivered - packetsBefore)
        } setup: {
            InMemoryRaft(voters: voters)
        }
    }

    // MeshSimulation's ConsensusSimulation (the one its tests use): Raft nodes, clients writing
    // through random nodes, a simulated network with delays, and every safety invariant checked
    // after every event. No faults. Reports client writes committed and acknowledged per
    // wall-clock second, i.e. how fast the simulation does its work.
    for nodes in [3, 5] {
        Benchmark(
            "ConsensusSimulation: \(nodes) nodes, 20 clients, no faults, 5 simulated s",
            configuration: .init(metrics: Metrics.standard + [Metrics.entries, Metrics.entriesPerSecond], warmupIterations: 1,
                                 maxDuration: .seconds(3), maxIterations: 100)
        ) { benchmark in
            let scenario = ConsensusSimulation.Scenario(nodes: nodes, faults: .none, faultEvery: .seconds(1_000_000_000))
            let sim = ConsensusSimulation(seed: UInt64(1 + benchmark.currentIteration), scenario: scenario, clients: 20)
            // A leader first (elections are not what this measures).
            sim.run(until: sim.now + .seconds(3))
            let before = sim.acknowledged.values.reduce(0) { $0 + $1.count }
            benchmark.startMeasurement()
            let start = ContinuousClock.now
            sim.run(until: sim.now + .seconds(5))
            let elapsed = ContinuousClock.now - start
            benchmark.stopMeasurement()
            let committed = sim.acknowledged.values.reduce(0) { $0 + $1.count } - before
            if !sim.violations.isEmpty { benchmark.error("violations: \(sim.violations.prefix(3))") }
            if committed == 0 { benchmark.error("nothing committed") }
            benchmark.measurement(Metrics.entries, committed)
            benchmark.measurement(Metrics.entriesPerSecond, perSecond(committed, elapsed))
        }
    }
}

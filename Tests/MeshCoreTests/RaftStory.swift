import MeshCore

/// A few Raft nodes wired by hand: packets wait in a queue until a test delivers them, time moves
/// only when a test says so, and each node's "disk" holds exactly what it was told to persist.
/// Tests read like the stories in etcd-raft's testdata.
struct RaftStory {
    var nodes: [String: Consensus.Instance] = [:]
    var disks: [String: Consensus.Stored] = [:]
    var applied: [String: [Consensus.Entry]] = [:]
    var restored: [String: [Consensus.Snapshot]] = [:]
    var queue: [Consensus.Packet] = []
    var now = Instant.zero
    /// Directives each node emitted, last event only.
    var last: [String: [Consensus.Directive]] = [:]
    /// Pairs (from, to) that drop everything.
    var cut: Set<[String]> = []
    let ids: [String: NodeID]
    let settings: Consensus.Settings

    init(voters: [String], learners: [String] = [], settings: Consensus.Settings = RaftStory.fast) {
        var ids: [String: NodeID] = [:]
        for (i, n) in (voters + learners).enumerated() { ids[n] = NodeID(UInt64(i + 1)) }
        self.ids = ids
        self.settings = settings
        let config = Consensus.Configuration(voters: Set(voters.map { ids[$0]! }), learners: Set(learners.map { ids[$0]! }))
        let stored = Consensus.Stored(hardState: .init(term: 1), entries: [.init(index: 1, term: 1, payload: .configuration(config))])
        for (i, n) in (voters + learners).enumerated() {
            disks[n] = stored
            nodes[n] = Consensus.Instance(id: ids[n]!, stored: stored, settings: settings, seed: UInt64(i + 100), now: .zero)
            applied[n] = []
        }
    }

    /// Election timeouts of 1–2 s; heartbeats every 100 ms.
    static let fast = Consensus.Settings()

    func id(_ n: String) -> NodeID { ids[n]! }
    func name(_ id: NodeID) -> String { ids.first { $0.value == id }?.key ?? "\(id)" }
    func node(_ n: String) -> Consensus.Instance { nodes[n]! }
    var leaders: [String] { nodes.filter { $0.value.role == .leader }.map(\.key).sorted() }

    // MARK: Events

    mutating func carryOut(_ n: String, _ directives: [Consensus.Directive]) {
        last[n] = directives
        for d in directives {
            switch d {
            case .persist(let hs, let entries, let truncateAfter):
                var disk = disks[n]!
                if let hs { disk.hardState = hs }
                if let cut = truncateAfter { disk.entries.removeAll { $0.index > cut } }
                disk.entries += entries
                disks[n] = disk
            case .persistSnapshot(let s, let discardLog):
                var disk = disks[n]!
                disk.snapshot = s
                if discardLog { disk.entries = [] } else { disk.entries.removeAll { $0.index <= s.index } }
                disks[n] = disk
            case .send(let p):
                if !cut.contains([name(p.from), name(p.to)]) { queue.append(p) }
            case .apply(let entries):
                applied[n]! += entries
            case .restore(let s):
                restored[n, default: []].append(s)
            case .scheduleTick, .roleChanged, .dropped:
                break
            }
        }
    }

    /// Advances the clock and ticks every node.
    mutating func tick(_ d: Duration) {
        now = now + d
        for n in nodes.keys.sorted() { carryOut(n, nodes[n]!.onTick(now: now)) }
    }

    /// Ticks in steps, delivering everything in between, for `d`.
    mutating func run(_ d: Duration, step: Duration = .milliseconds(10)) {
        let end = now + d
        while now < end {
            tick(step)
            deliverAll()
        }
    }

    /// Delivers queued packets (and the answers they cause) until the queue is empty.
    mutating func deliverAll(limit: Int = 10_000) {
        var n = 0
        while !queue.isEmpty && n < limit {
            let p = queue.removeFirst()
            deliver(p)
            n += 1
        }
    }

    mutating func deliver(_ p: Consensus.Packet) {
        let to = name(p.to)
        guard nodes[to] != nil else { return }
        carryOut(to, nodes[to]!.onPacket(p, now: now))
    }

    /// Time passes, but only `n` gets a tick (its election timer fires first, say).
    mutating func fire(_ n: String, after d: Duration = .seconds(2)) {
        now = now + d
        carryOut(n, nodes[n]!.onTick(now: now))
    }

    mutating func propose(_ n: String, _ key: String, value: String = "v", client: UInt64 = 1, sequence: UInt64 = 1) -> Consensus.Index? {
        let r = ClusterState.Request(client: .init(client), sequence: sequence, command: .setSetting(key: key, value: value))
        guard case .success(let (index, d)) = nodes[n]!.propose(r, now: now) else { return nil }
        carryOut(n, d)
        return index
    }

    /// Isolates `n` from everybody, both ways.
    mutating func isolate(_ n: String) {
        for o in nodes.keys where o != n {
            cut.insert([n, o])
            cut.insert([o, n])
        }
        let ids = self.ids
        let me = ids[n]!
        queue.removeAll { $0.from == me || $0.to == me }
    }

    mutating func heal() { cut = [] }

    /// Crash and restart from what the node had persisted.
    mutating func restart(_ n: String, seed: UInt64 = 7) {
        nodes[n] = Consensus.Instance(id: id(n), stored: disks[n]!, settings: settings, seed: seed, now: now)
        applied[n] = []
        carryOut(n, nodes[n]!.start(now: now))
    }

    /// Settings keys applied on a node, in order.
    func appliedKeys(_ n: String) -> [String] {
        applied[n]!.compactMap { e in
            if case .command(let r) = e.payload, case .setSetting(let k, _) = r.command { return k }
            return nil
        }
    }
}

extension Array where Element == Consensus.Directive {
    var sends: [Consensus.Packet] { compactMap { if case .send(let p) = $0 { p } else { nil } } }
    var persists: [Int] { indices.filter { if case .persist = self[$0] { true } else { false } } }
}

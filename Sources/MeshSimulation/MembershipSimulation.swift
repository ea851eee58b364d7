import MeshCore

/// Many nodes of the membership protocol in one process, on a simulated network and clock, all
/// driven by one seed: the same seed replays the same run, event for event.
public final class MembershipSimulation {
    /// A state change one node observed about another.
    public struct Observation: Sendable, Equatable {
        public var at: Instant
        public var observer: NodeID
        public var subject: NodeID
        public var state: Membership.State
        public var incarnation: UInt64
    }

    struct Node {
        var id: NodeID
        var name: String
        var address: String
        var instance: Membership.Instance?
        var pausedUntil: Instant?
        var tickGeneration: UInt64 = 0
        var persistedIncarnation: UInt64 = 0
        /// Messages that arrived while the node was paused, handled when it resumes.
        var backlog: [Membership.Packet] = []
        var isUp: Bool { instance != nil }
    }

    enum Event {
        case tick(node: Int, generation: UInt64)
        case deliver(to: Int, Membership.Packet)
        case resume(node: Int)
    }

    public let seed: UInt64
    public let settings: Membership.Settings
    public var faults: NetworkFaults
    public private(set) var now: Instant = .zero
    public private(set) var observations: [Observation] = []
    /// Messages sent, delivered and dropped (lost, partitioned, or to a node that is down).
    public private(set) var sent = 0
    public private(set) var delivered = 0
    public private(set) var dropped = 0
    /// Record every observation (costly for big meshes; off by default).
    public var recordObservations: Bool

    var nodes: [Node] = []
    private var index: [NodeID: Int] = [:]
    private var byAddress: [String: Int] = [:]
    private var queue = Heap<Instant, Event>()
    private var rng: SeededRandom
    private var reach = Reachability()
    /// Called after every event, for invariants that must hold at every step.
    public var check: ((MembershipSimulation) -> Void)?
    /// Called for every packet delivered (receiver, packet), for tracing a run.
    public var onDeliver: ((NodeID, Membership.Packet) -> Void)?

    /// How the nodes start.
    public enum Start: Sendable {
        /// Every node joins through n0 at the start (a join storm).
        case join
        /// Every node already knows every other as alive (a mesh that has converged).
        case converged
        /// Nobody knows anybody.
        case alone
    }

    /// `count` nodes named n0, n1, ….
    public init(
        nodes count: Int, seed: UInt64, settings: Membership.Settings = .init(), faults: NetworkFaults = .none,
        recordObservations: Bool = true, start: Start = .join
    ) {
        self.seed = seed
        self.settings = settings
        self.faults = faults
        self.recordObservations = recordObservations
        rng = SeededRandom(seed: seed)
        for i in 0..<count {
            var id = NodeID(rng.next())
            while index[id] != nil { id = NodeID(rng.next()) }
            let node = Node(id: id, name: "n\(i)", address: "sim-\(i):7770")
            index[id] = i
            byAddress[node.address] = i
            nodes.append(node)
        }
        for i in 0..<count {
            boot(i, seeds: start == .join && i > 0 ? [nodes[0].address] : [])
        }
        if start == .converged {
            let records = nodes.map { n in
                Membership.Record(id: n.id, meta: n.instance!.meta, incarnation: n.instance!.incarnation, state: .alive)
            }
            for i in nodes.indices { nodes[i].instance!.preload(records, now: now) }
        }
    }

    // MARK: Queries

    public var ids: [NodeID] { nodes.map(\.id) }
    public func id(_ i: Int) -> NodeID { nodes[i].id }
    public func name(_ id: NodeID) -> String { index[id].map { nodes[$0].name } ?? "\(id)" }
    public func isUp(_ id: NodeID) -> Bool { index[id].map { nodes[$0].isUp } ?? false }
    public var upNodes: [NodeID] { nodes.filter(\.isUp).map(\.id) }

    /// The instance of a running node.
    public func instance(_ id: NodeID) -> Membership.Instance? { index[id].flatMap { nodes[$0].instance } }

    /// What `observer` thinks of `subject` (nil: it does not know it).
    public func state(of subject: NodeID, seenBy observer: NodeID) -> Membership.State? {
        instance(observer)?.member(subject)?.state
    }

    /// True when every running node sees every running node alive, and every stopped node as
    /// dead or left (or not at all).
    public var isConverged: Bool {
        let up = nodes.filter(\.isUp)
        for o in up {
            let inst = o.instance!
            for s in nodes {
                let st = inst.member(s.id)?.state
                if s.isUp {
                    if st != .alive { return false }
                } else if st == .alive || st == .suspect {
                    return false
                }
            }
        }
        return true
    }

    // MARK: Running

    /// Runs until `duration` of simulated time has passed.
    public func run(for duration: Duration) {
        run(until: now + duration)
    }

    public func run(until end: Instant) {
        while let t = queue.minKey, t <= end {
            step()
        }
        now = Swift.max(now, end)
    }

    /// Runs until `condition` holds or `limit` passes; returns the first instant on a grid of
    /// `every` (simulated time) at which it held, or nil. The condition is not checked after each
    /// event because whole-mesh conditions cost O(n²).
    @discardableResult
    public func run(until condition: (MembershipSimulation) -> Bool, limit: Duration, every: Duration = .milliseconds(50)) -> Instant? {
        let end = now + limit
        while true {
            if condition(self) { return now }
            if now >= end { return nil }
            run(until: Swift.min(now + every, end))
        }
    }

    private var eventsAtNow = 0

    private func step() {
        guard let (t, event) = queue.pop() else { return }
        // A protocol that keeps asking to be woken at the same instant would hang the run.
        eventsAtNow = t == now ? eventsAtNow + 1 : 0
        precondition(eventsAtNow < 1_000_000, "seed \(seed): simulated time stopped at \(now) (a node keeps scheduling ticks for now)")
        now = t
        switch event {
        case .tick(let i, let generation):
            guard nodes[i].tickGeneration == generation, nodes[i].isUp else { break }
            if nodes[i].pausedUntil != nil { break }
            let d = nodes[i].instance!.onTick(now: now)
            carryOut(d, from: i)
        case .deliver(let i, let packet):
            guard nodes[i].isUp else {
                dropped += 1
                break
            }
            if nodes[i].pausedUntil != nil {
                nodes[i].backlog.append(packet)
                break
            }
            delivered += 1
            onDeliver?(nodes[i].id, packet)
            let d = nodes[i].instance!.onPacket(packet, now: now)
            carryOut(d, from: i)
        case .resume(let i):
            guard let until = nodes[i].pausedUntil, until <= now, nodes[i].isUp else { break }
            nodes[i].pausedUntil = nil
            let backlog = nodes[i].backlog
            nodes[i].backlog = []
            var d = nodes[i].instance!.onTick(now: now)
            for p in backlog { d += nodes[i].instance!.onPacket(p, now: now) }
            carryOut(d, from: i)
        }
        check?(self)
    }

    private func carryOut(_ directives: [Membership.Directive], from i: Int) {
        for d in directives {
            switch d {
            case .send(let packet, let destination):
                sent += 1
                let target: Int?
                switch destination {
                case .node(let id, let address):
                    // A node that restarted elsewhere is reached by id; otherwise by address.
                    target = index[id] ?? byAddress[address]
                case .address(let a):
                    target = byAddress[a]
                }
                guard let to = target, reach.canSend(i, to), !rng.chance(faults.loss) else {
                    dropped += 1
                    continue
                }
                queue.push(now + delay(), .deliver(to: to, packet))
                if rng.chance(faults.duplication) { queue.push(now + delay(), .deliver(to: to, packet)) }
            case .scheduleTick(let at):
                nodes[i].tickGeneration += 1
                queue.push(at, .tick(node: i, generation: nodes[i].tickGeneration))
            case .memberChanged(let m, _):
                if recordObservations {
                    observations.append(Observation(at: now, observer: nodes[i].id, subject: m.id, state: m.state, incarnation: m.incarnation))
                }
            case .persistIncarnation(let inc):
                nodes[i].persistedIncarnation = inc
            case .joined, .joinRejected:
                break
            }
        }
    }

    private func delay() -> Duration {
        let lo = faults.minDelay.nanosecondsClamped, hi = faults.maxDelay.nanosecondsClamped
        guard hi > lo else { return faults.minDelay }
        return .nanoseconds(lo + Int64(rng.next() % UInt64(hi - lo)))
    }

    // MARK: Faults

    private func boot(_ i: Int, seeds: [String]) {
        let meta = Membership.Meta(name: nodes[i].name, address: nodes[i].address, version: "sim")
        var inst = Membership.Instance(
            id: nodes[i].id, meta: meta, incarnation: nodes[i].persistedIncarnation + 1, settings: settings,
            seed: rng.next(), now: now)
        var d = inst.start(now: now)
        if !seeds.isEmpty { d += inst.join(seeds: seeds, now: now) }
        nodes[i].instance = inst
        nodes[i].pausedUntil = nil
        nodes[i].backlog = []
        carryOut(d, from: i)
    }

    /// The node's process dies: its state is gone except what it persisted (its incarnation).
    public func crash(_ id: NodeID) {
        guard let i = index[id] else { return }
        nodes[i].instance = nil
        nodes[i].tickGeneration += 1
    }

    /// Starts a crashed node again, joining through a random running node.
    public func restart(_ id: NodeID) {
        guard let i = index[id], !nodes[i].isUp else { return }
        let up = nodes.indices.filter { nodes[$0].isUp && $0 != i }
        let seeds = up.isEmpty ? [] : [nodes[up[Int(rng.next() % UInt64(up.count))]].address]
        boot(i, seeds: seeds)
    }

    /// The node stops (SIGSTOP) for `duration`: no ticks, messages pile up, then all at once.
    public func pause(_ id: NodeID, for duration: Duration) {
        guard let i = index[id], nodes[i].isUp else { return }
        nodes[i].pausedUntil = now + duration
        queue.push(now + duration, .resume(node: i))
    }

    /// The node publishes new metadata.
    public func updateMeta(_ id: NodeID, _ change: (inout Membership.Meta) -> Void) {
        guard let i = index[id], nodes[i].isUp else { return }
        var meta = nodes[i].instance!.meta
        change(&meta)
        let d = nodes[i].instance!.updateMeta(meta, now: now)
        carryOut(d, from: i)
    }

    /// A graceful leave.
    public func leave(_ id: NodeID) {
        guard let i = index[id], nodes[i].isUp else { return }
        let d = nodes[i].instance!.leave(now: now)
        carryOut(d, from: i)
    }

    /// Splits the network into groups that cannot reach each other; nodes not named form group 0.
    public func partition(_ groups: [[NodeID]]) {
        reach.group = [:]
        for (g, members) in groups.enumerated() {
            for m in members { if let i = index[m] { reach.group[i] = g + 1 } }
        }
    }

    /// Cuts `from` → `to` only.
    public func block(from: NodeID, to: NodeID) {
        guard let a = index[from], let b = index[to] else { return }
        reach.blocked.insert(.init(from: a, to: b))
    }

    public func heal() { reach = Reachability() }

    /// A random draw from the simulation's own generator (for tests choosing victims).
    public func random(_ upperBound: Int) -> Int { Int(rng.next() % UInt64(upperBound)) }
}

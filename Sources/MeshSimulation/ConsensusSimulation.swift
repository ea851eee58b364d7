import MeshCore

/// Raft nodes in one process on a simulated network and clock, with clients writing through
/// random nodes, all from one seed. Crashes lose everything but what a node persisted; pauses hold
/// its messages; partitions cut groups, single directions or rings. Safety invariants are checked
/// after every event; `violations` lists any that failed.
public final class ConsensusSimulation {
    /// The fault programme of a run, chosen from the seed.
    public struct Scenario: Sendable, CustomStringConvertible {
        public var nodes: Int
        public var faults: NetworkFaults
        public var faultDuration: Duration
        /// Mean time between fault events (crash, pause, partition, heal).
        public var faultEvery: Duration
        public var snapshotEvery: Consensus.Index

        public init(nodes: Int, faults: NetworkFaults, faultDuration: Duration = .seconds(4),
                    faultEvery: Duration = .milliseconds(400), snapshotEvery: Consensus.Index = 40) {
            self.nodes = nodes
            self.faults = faults
            self.faultDuration = faultDuration
            self.faultEvery = faultEvery
            self.snapshotEvery = snapshotEvery
        }

        /// A scenario drawn from the seed: 3, 5 or 7 nodes, some loss, duplication and delay.
        public static func random(seed: UInt64) -> Scenario {
            var r = SeededRandom(seed: seed ^ 0x5eed)
            let nodes = [3, 3, 5, 5, 7][Int(r.next() % 5)]
            let faults = NetworkFaults(
                loss: Double(r.next() % 11) / 100, duplication: Double(r.next() % 6) / 100,
                minDelay: .microseconds(200), maxDelay: .milliseconds(Int64(1 + r.next() % 20)))
            return Scenario(nodes: nodes, faults: faults)
        }

        public var description: String {
            "\(nodes) nodes, loss \(faults.loss), duplication \(faults.duplication), delay up to \(faults.maxDelay)"
        }
    }

    struct Node {
        var id: NodeID
        var instance: Consensus.Instance?
        var disk: Consensus.Stored
        var state = ClusterState()
        /// Indexes applied to `state` since the last (re)start, with their entries.
        var appliedThrough: Consensus.Index = 0
        var pausedUntil: Instant?
        var backlog: [Event] = []
        var tickGeneration: UInt64 = 0
        var jobs = NodeJobs()
    }

    /// Who sent a write: an outside client or a node's worker (its reports).
    enum Requester: Equatable {
        case client(Int)
        case node(Int)
    }

    enum Event {
        case tick(node: Int, generation: UInt64)
        case raft(to: Int, Consensus.Packet)
        case request(to: Int, from: Requester, ClusterState.Request)
        case reply(Requester, sequence: UInt64, accepted: Bool, leaderHint: NodeID?)
        case clientTimer(client: Int, generation: UInt64)
        case resume(node: Int)
        case leaderDropped(node: Int, leader: NodeID)
        case fault
        /// A node's job duties (renewing leases; as coordinator, scheduling and loss detection).
        case jobTimer(node: Int, generation: UInt64)
        /// A node's worker resends its oldest unanswered report.
        case reportTimer(node: Int, generation: UInt64)
        /// An attempt's process ends by itself.
        case processExit(Worker.Key)
        /// An attempt's supervisor checks its lease.
        case supervise(Worker.Key)
        /// The node's agent learns that an attempt's process ended.
        case processEnded(node: Int, Worker.Key)
        /// A node that a fault point crashed comes back.
        case reboot(node: Int)
    }

    struct Client {
        var id: ClusterState.ClientID
        var sequence: UInt64 = 0
        var pending: ClusterState.Request?
        var sentAt: Instant = .zero
        var target: Int = 0
        var generation: UInt64 = 0
    }

    public let seed: UInt64
    public let scenario: Scenario
    public let settings: Consensus.Settings
    /// Jobs instead of plain writes (nil: plain writes).
    public let jobOptions: JobOptions?
    public private(set) var now: Instant = .zero
    public internal(set) var violations: [String] = []
    /// Writes whose client got a positive answer.
    public private(set) var acknowledged: [ClusterState.ClientID: Set<UInt64>] = [:]
    public private(set) var events = 0
    public private(set) var elections = 0

    var nodes: [Node] = []
    var index: [NodeID: Int] = [:]
    var queue = Heap<Instant, Event>()
    var rng: SeededRandom
    private var reach = Reachability()
    var clients: [Client] = []
    /// Every attempt's process, by attempt (they outlive crashed agents, as supervisors do).
    var processes: [Worker.Key: SimProcess] = [:]
    /// Jobs whose submit a client saw acknowledged.
    public internal(set) var acknowledgedJobs: Set<JobID> = []
    /// How often each fault point crashed a node.
    public internal(set) var faultPointsHit: [FaultPoint: Int] = [:]
    /// How long after the faults stopped everything had settled (nil: not within the bound).
    public private(set) var settledAfter: Duration?
    var booting = false
    /// Fault points draw from their own generator, so that turning them off (or changing their
    /// rate) leaves the rest of a seed's schedule as it was until the first one fires.
    var faultPointRng: SeededRandom
    /// Writes of each client by sequence (to learn the job id a submit created).
    var clientCommands: [String: ClusterState.Command] = [:]
    /// The job each submit created, by "client/sequence".
    var createdJobs: [String: JobID] = [:]
    /// Committed entries by index, as first applied anywhere: every later application must match.
    /// `committedIn` is the term of the node that applied it first, i.e. of the leader that
    /// committed it (leaders apply on commit, before any follower hears of it).
    private var committed: [Consensus.Index: (term: Consensus.Term, payload: Consensus.Payload, committedIn: Consensus.Term)] = [:]
    /// The state machine at each snapshot index (the snapshot "data" names the index).
    private var snapshots: [Consensus.Index: ClusterState] = [:]
    private var leaders: [Consensus.Term: NodeID] = [:]
    /// Requests (client, sequence) whose first application changed the state, and where.
    private var freshApplications: [String: Consensus.Index] = [:]
    var faultsOn = true
    private var eventsAtNow = 0
    /// Receives a line for each notable event (role changes, applies, snapshots, faults), for
    /// following a failing seed.
    public var trace: ((String) -> Void)?

    public init(seed: UInt64, scenario: Scenario? = nil, settings: Consensus.Settings = Consensus.Settings().scaled(5), clients: Int = 3,
                jobs: JobOptions? = nil) {
        self.seed = seed
        self.scenario = scenario ?? .random(seed: seed)
        self.settings = settings
        jobOptions = jobs
        rng = SeededRandom(seed: seed)
        faultPointRng = SeededRandom(seed: seed ^ 0xFA17_9017)
        var ids: [NodeID] = []
        for _ in 0..<self.scenario.nodes {
            var id = NodeID(rng.next())
            while id.rawValue == 0 || ids.contains(id) { id = NodeID(rng.next()) }
            ids.append(id)
        }
        let config = Consensus.Configuration(voters: Set(ids))
        var entries: [Consensus.Entry] = [.init(index: 1, term: 1, payload: .configuration(config))]
        if let jobs {
            // Every node registered from the start, with room for a few jobs.
            for (i, id) in ids.enumerated() {
                let r = ClusterState.Request(client: .init(1), sequence: UInt64(i + 1), command: .register(
                    id, name: "n\(i)", address: "sim:\(i)", capacity: .init(slots: jobs.slotsPerNode, cpus: jobs.slotsPerNode)))
                entries.append(.init(index: Consensus.Index(i + 2), term: 1, payload: .command(r)))
            }
        }
        let bootstrap = Consensus.Stored(hardState: .init(term: 1), entries: entries)
        for (i, id) in ids.enumerated() {
            nodes.append(Node(id: id, disk: bootstrap))
            index[id] = i
            boot(i)
        }
        for c in 0..<clients {
            self.clients.append(Client(id: .init(rng.next() | 1), target: Int(rng.next() % UInt64(ids.count))))
            queue.push(now + .milliseconds(Int64(50 + c * 13)), .clientTimer(client: c, generation: 0))
        }
        queue.push(now + self.scenario.faultEvery, .fault)
    }

    // MARK: Running

    /// Faults for the scenario's duration, then everything healed: returns whether, within
    /// `liveness`, a leader was in place and every acknowledged write applied on every node.
    @discardableResult
    public func run(liveness: Duration = .seconds(20)) -> Bool {
        run(until: now + scenario.faultDuration)
        healAll()
        let deadline = now + liveness
        while now < deadline {
            run(until: Swift.min(deadline, now + .milliseconds(100)))
            if settled {
                settledAfter = now - (deadline - liveness)
                if jobOptions != nil { finalJobChecks() }
                return violations.isEmpty
            }
        }
        violations.append("no progress: \(livenessReport)")
        return false
    }

    public func run(until end: Instant) {
        while let t = queue.minKey, t <= end {
            step()
        }
        now = Swift.max(now, end)
    }

    /// A leader exists, no client write is waiting, and every node applied every acknowledged
    /// write (with the same entries, which `apply` checks as it goes).
    public var settled: Bool {
        guard nodes.contains(where: { $0.instance?.role == .leader }) else { return false }
        guard clients.allSatisfy({ $0.pending == nil }) else { return false }
        let lastAck = freshApplications.values.max() ?? 0
        guard nodes.allSatisfy({ $0.appliedThrough >= lastAck }) else { return false }
        return jobOptions == nil || jobsSettled
    }

    var livenessReport: String {
        let roles = nodes.map { n in n.instance.map { "\($0.role.rawValue)@\($0.term) commit \($0.commitIndex)" } ?? "down" }
        return "roles \(roles), pending clients \(clients.filter { $0.pending != nil }.count)" + (jobOptions == nil ? "" : "; " + jobsReport)
    }

    private func step() {
        guard let (t, event) = queue.pop() else { return }
        eventsAtNow = t == now ? eventsAtNow + 1 : 0
        if eventsAtNow > 200_000 {
            violations.append("simulated time stopped at \(now)")
            faultsOn = false
            queue = Heap()
            return
        }
        now = t
        events += 1
        switch event {
        case .tick(let i, let g):
            guard nodes[i].tickGeneration == g, nodes[i].instance != nil else { break }
            if nodes[i].pausedUntil != nil { nodes[i].backlog.append(event); break }
            carryOut(i, nodes[i].instance!.onTick(now: now))
        case .jobTimer(let i, let g), .reportTimer(let i, let g):
            guard nodes[i].jobs.generation == g, nodes[i].instance != nil else { break }
            if nodes[i].pausedUntil != nil { nodes[i].backlog.append(event); break }
            if case .jobTimer = event { jobTimer(i) } else { reportTimer(i) }
        case .processExit(let key):
            processExit(key)
        case .supervise(let key):
            supervise(key)
        case .processEnded(let i, let key):
            guard nodes[i].instance != nil else { break }
            if nodes[i].pausedUntil != nil { nodes[i].backlog.append(event); break }
            processEnded(i, key)
        case .raft(let i, let p):
            guard nodes[i].instance != nil else { break }
            if nodes[i].pausedUntil != nil { nodes[i].backlog.append(event); break }
            carryOut(i, nodes[i].instance!.onPacket(p, now: now))
        case .request(let i, let from, let r):
            guard nodes[i].instance != nil else { break }
            if nodes[i].pausedUntil != nil { nodes[i].backlog.append(event); break }
            handleRequest(i, from: from, r)
        case .reply(.client(let c), let seq, let accepted, let hint):
            handleReply(c, seq, accepted, hint)
        case .reply(.node(let i), let seq, let accepted, let hint):
            guard nodes[i].instance != nil else { break }
            if nodes[i].pausedUntil != nil { nodes[i].backlog.append(event); break }
            reportReply(i, seq, accepted, hint)
        case .clientTimer(let c, let g):
            if g == clients[c].generation { clientTimer(c) }
        case .resume(let i):
            guard let until = nodes[i].pausedUntil, until <= now else { break }
            nodes[i].pausedUntil = nil
            let backlog = nodes[i].backlog
            nodes[i].backlog = []
            for e in backlog { queue.push(now, e) }
            scheduleTick(i, at: now)
        case .leaderDropped(let i, let l):
            guard nodes[i].instance?.leader == l, nodes[i].pausedUntil == nil else { break }
            carryOut(i, nodes[i].instance!.onLeaderUnreachable(now: now))
        case .reboot(let i):
            if nodes[i].instance == nil { boot(i) }
        case .fault:
            if faultsOn { injectFault() }
            if faultsOn { queue.push(now + scenario.faultEvery.scaled(0.5 + Double(rng.next() % 100) / 100), .fault) }
        }
    }

    // MARK: Nodes

    private func boot(_ i: Int) {
        booting = true
        defer { booting = false }
        var inst = Consensus.Instance(id: nodes[i].id, stored: nodes[i].disk, settings: settings, seed: rng.next(), now: now)
        nodes[i].state = nodes[i].disk.snapshot.flatMap { snapshots[$0.index] } ?? ClusterState()
        nodes[i].appliedThrough = nodes[i].disk.snapshot?.index ?? 0
        nodes[i].pausedUntil = nil
        nodes[i].backlog = []
        trace?("\(now) boot n\(i) term \(nodes[i].disk.hardState.term) snapshot \(nodes[i].disk.snapshot?.index ?? 0) entries \(nodes[i].disk.entries.map { "\($0.index):\($0.term)" }.suffix(6))")
        let d = inst.start(now: now)
        nodes[i].instance = inst
        if jobOptions != nil { bootJobs(i) }
        carryOut(i, d)
    }

    func carryOut(_ i: Int, _ directives: [Consensus.Directive]) {
        let id = nodes[i].id
        for d in directives {
            switch d {
            case .persist(let hs, let entries, let truncateAfter):
                if truncateAfter != nil || !entries.isEmpty {
                    trace?("\(now) n\(i) persist truncateAfter \(truncateAfter.map(String.init) ?? "-") + \(entries.map { "\($0.index):\($0.term)" })")
                }
                if let hs { nodes[i].disk.hardState = hs }
                if let cut = truncateAfter { nodes[i].disk.entries.removeAll { $0.index > cut } }
                nodes[i].disk.entries += entries
            case .persistSnapshot(let s, let discardLog):
                trace?("\(now) n\(i) snapshot at \(s.index) term \(s.term)\(discardLog ? " (installed)" : "")")
                nodes[i].disk.snapshot = s
                if discardLog { nodes[i].disk.entries = [] } else { nodes[i].disk.entries.removeAll { $0.index <= s.index } }
            case .send(let p):
                send(p, from: i)
            case .apply(let entries):
                for e in entries { apply(e, on: i) }
                maybeCompact(i)
                checkWatches()
                // The coordinator dies as it commits an assignment or a loss, before it tells
                // anyone (the rest of this batch, its sends included, dies with it).
                if jobOptions != nil, nodes[i].instance?.role == .leader, let point = Self.coordinatorFaultPoint(entries),
                   crashAtFaultPoint(i, point) { return }
                if jobOptions != nil {
                    syncWorker(i)
                    // A worker fault point may have killed it: the rest of the batch dies with it.
                    if nodes[i].instance == nil { return }
                }
            case .restore(let s):
                guard let st = snapshots[s.index] else {
                    violations.append("\(id) got a snapshot at \(s.index) that no node took")
                    break
                }
                nodes[i].state = st
                nodes[i].appliedThrough = s.index
            case .scheduleTick(let at):
                scheduleTick(i, at: at)
            case .dropped(_, let why):
                violations.append("\(id) dropped a packet from a correct node: \(why)")
            case .roleChanged(let role, let term, let leader):
                trace?("\(now) n\(i) \(role.rawValue) term \(term) leader \(leader.flatMap { index[$0] }.map { "n\($0)" } ?? "-") last \(nodes[i].instance?.lastIndex ?? 0) commit \(nodes[i].instance?.commitIndex ?? 0)")
                if role == .leader { nodes[i].jobs.managerInFlight = 0 }
                if role == .leader {
                    elections += 1
                    if let other = leaders[term], other != id {
                        violations.append("two leaders in term \(term): \(other) and \(id)")
                    }
                    leaders[term] = id
                    checkLeaderCompleteness(i)
                }
            }
        }
    }

    private func apply(_ e: Consensus.Entry, on i: Int) {
        let id = nodes[i].id
        if e.index != nodes[i].appliedThrough + 1 {
            violations.append("\(id) applied \(e.index) after \(nodes[i].appliedThrough)")
        }
        if let c = committed[e.index] {
            if c.term != e.term || c.payload != e.payload {
                violations.append("committed entry \(e.index) differs: term \(c.term) on one node, \(e.term) on \(id)")
            }
        } else {
            committed[e.index] = (e.term, e.payload, nodes[i].instance?.term ?? e.term)
        }
        nodes[i].appliedThrough = e.index
        trace?("\(now) n\(i) apply \(e.index):\(e.term)")
        switch e.payload {
        case .command(let r):
            let before = nodes[i].state.sessions[r.client]?.lastSequence ?? 0
            let job: JobsBefore? = jobOptions == nil ? nil : jobsBefore(r.command, on: i)
            let outcome = nodes[i].state.apply(r, at: e.index)
            if let job, r.sequence > before { checkJobCommand(r.command, outcome: outcome, before: job, on: i) }
            if r.sequence > before {
                let key = "\(r.client.rawValue)/\(r.sequence)"
                if let first = freshApplications[key], first != e.index {
                    violations.append("request \(key) took effect twice: at \(first) and \(e.index)")
                } else {
                    freshApplications[key] = e.index
                    if case .created(let ids, _) = outcome, let id = ids.first { createdJobs[key] = id }
                }
            }
        case .noop, .configuration:
            nodes[i].state.advance(to: e.index)
        }
    }

    private func maybeCompact(_ i: Int) {
        guard let inst = nodes[i].instance else { return }
        let base = nodes[i].disk.snapshot?.index ?? 0
        guard inst.appliedIndex >= base + scenario.snapshotEvery else { return }
        let at = inst.appliedIndex
        if let existing = snapshots[at], existing != nodes[i].state {
            violations.append("two states at snapshot index \(at)")
        }
        snapshots[at] = nodes[i].state
        carryOut(i, nodes[i].instance!.compact(upTo: at, data: Array(String(at).utf8), now: now))
    }

    /// A new leader must hold every entry committed in an earlier term (Raft's leader
    /// completeness). A leader of an older term can still be elected after a newer one (from votes
    /// that a pause held back); it owes nothing to the newer term's commits.
    private func checkLeaderCompleteness(_ i: Int) {
        guard let inst = nodes[i].instance, let top = committed.keys.max() else { return }
        let base = inst.snapshot?.index ?? 0
        guard base + 1 <= top else { return }
        for idx in (base + 1)...top {
            guard let c = committed[idx], c.committedIn < inst.term else { continue }
            guard let e = inst.entry(at: idx) else {
                violations.append("leader \(nodes[i].id) of term \(inst.term) lacks committed entry \(idx)")
                return
            }
            if e.term != c.term { violations.append("leader \(nodes[i].id) has a different entry at committed index \(idx)") }
        }
    }

    private func scheduleTick(_ i: Int, at: Instant) {
        nodes[i].tickGeneration += 1
        queue.push(Swift.max(at, now), .tick(node: i, generation: nodes[i].tickGeneration))
    }

    private func send(_ p: Consensus.Packet, from i: Int) {
        guard let to = index[p.to] else { return }
        deliver(.raft(to: to, p), from: i, to: to)
    }

    func deliver(_ event: Event, from: Int?, to: Int?) {
        if let from, let to, !reach.canSend(from, to) { return }
        if rng.chance(scenario.faults.loss) { return }
        queue.push(now + delay(), event)
        if rng.chance(scenario.faults.duplication) { queue.push(now + delay(), event) }
    }

    private func delay() -> Duration {
        let lo = scenario.faults.minDelay.nanosecondsClamped, hi = scenario.faults.maxDelay.nanosecondsClamped
        return hi > lo ? .nanoseconds(lo + Int64(rng.next() % UInt64(hi - lo))) : scenario.faults.minDelay
    }

    // MARK: Clients

    private func clientTimer(_ c: Int) {
        if clients[c].pending == nil {
            // Once the faults are over, clients finish what they started and stop.
            guard faultsOn else { return }
            clients[c].sequence += 1
            let command: ClusterState.Command = jobOptions == nil
                ? .setSetting(key: "c\(c)", value: "\(clients[c].sequence)")
                : jobCommand(client: c)
            clients[c].pending = ClusterState.Request(client: clients[c].id, sequence: clients[c].sequence, command: command)
            clientCommands["\(clients[c].id.rawValue)/\(clients[c].sequence)"] = command
        } else {
            // No answer in time: try another node with the same (client, sequence).
            clients[c].target = Int(rng.next() % UInt64(nodes.count))
        }
        sendRequest(c)
    }

    private func sendRequest(_ c: Int) {
        guard let r = clients[c].pending else { return }
        clients[c].sentAt = now
        clients[c].generation += 1
        deliver(.request(to: clients[c].target, from: .client(c), r), from: nil, to: nil)
        queue.push(now + .milliseconds(300), .clientTimer(client: c, generation: clients[c].generation))
    }

    /// A node answers a client when it (as leader) applies the request, or at once if it is not
    /// the leader.
    func handleRequest(_ i: Int, from: Requester, _ r: ClusterState.Request) {
        guard var inst = nodes[i].instance else { return }
        let replyFrom: Int? = if case .node(let n) = from { n } else { nil }
        switch inst.propose(r, now: now) {
        case .success(let (idx, d)):
            nodes[i].instance = inst
            carryOut(i, d)
            watch(i, index: idx, from: from, client: r.client, sequence: r.sequence)
        case .failure(let e):
            var hint: NodeID?
            if case .notLeader(let l) = e { hint = l }
            deliver(.reply(from, sequence: r.sequence, accepted: false, leaderHint: hint), from: i, to: replyFrom)
        }
    }

    private var watches: [(node: Int, index: Consensus.Index, term: Consensus.Term, from: Requester, client: ClusterState.ClientID, sequence: UInt64)] = []

    private func watch(_ i: Int, index: Consensus.Index, from: Requester, client: ClusterState.ClientID, sequence: UInt64) {
        guard let term = nodes[i].instance?.term else { return }  // it died at a fault point
        watches.append((i, index, term, from, client, sequence))
        checkWatches()
    }

    /// Acknowledges proposals whose entry the proposing leader has applied (in its term).
    private func checkWatches() {
        watches.removeAll { w in
            guard let inst = nodes[w.node].instance else { return true }
            guard inst.term == w.term, inst.role == .leader else { return true }
            guard nodes[w.node].appliedThrough >= w.index else { return false }
            if let e = committed[w.index], case .command(let r) = e.payload, r.client == w.client,
               r.sequence == w.sequence, e.term == w.term {
                let to: Int? = if case .node(let n) = w.from { n } else { nil }
                deliver(.reply(w.from, sequence: w.sequence, accepted: true, leaderHint: nil), from: w.node, to: to)
            }
            return true
        }
    }

    private func handleReply(_ c: Int, _ seq: UInt64, _ accepted: Bool, _ hint: NodeID?) {
        guard let p = clients[c].pending, p.sequence == seq else { return }
        if accepted {
            acknowledged[clients[c].id, default: []].insert(seq)
            let key = "\(clients[c].id.rawValue)/\(seq)"
            if freshApplications[key] == nil {
                violations.append("write \(clients[c].id)/\(seq) acknowledged but never took effect")
            }
            if let job = createdJobs[key] { acknowledgedJobs.insert(job) }
            clients[c].pending = nil
            clients[c].generation += 1
            queue.push(now + .milliseconds(Int64(5 + rng.next() % 40)), .clientTimer(client: c, generation: clients[c].generation))
        } else if let h = hint, let t = index[h], t != clients[c].target {
            clients[c].target = t
            sendRequest(c)
        }
    }

    // MARK: Faults

    func injectFault() {
        let n = nodes.count
        let victim = Int(rng.next() % UInt64(n))
        switch rng.next() % 10 {
        case 0, 1:
            // Crash and come back after a while, from what was persisted.
            if nodes[victim].instance != nil {
                crash(victim)
            } else {
                boot(victim)
            }
        case 2:
            if nodes[victim].instance != nil, nodes[victim].pausedUntil == nil {
                let d = Duration.milliseconds(Int64(100 + rng.next() % 800))
                nodes[victim].pausedUntil = now + d
                queue.push(now + d, .resume(node: victim))
            }
        case 3:
            // Symmetric split into a minority and a majority.
            var group: [Int: Int] = [:]
            for i in 0..<n { group[i] = rng.chance(0.4) ? 1 : 0 }
            reach.group = group
        case 4:
            // Isolate the leader.
            if let l = nodes.indices.first(where: { nodes[$0].instance?.role == .leader }) { reach.group = [l: 1] }
        case 5:
            // One direction only: the victim can send but not receive.
            for i in 0..<n where i != victim { reach.blocked.insert(.init(from: i, to: victim)) }
        case 6:
            // A ring: each node hears only its neighbours.
            reach.blocked = []
            for a in 0..<n { for b in 0..<n where a != b && (a - b + n) % n != 1 && (b - a + n) % n != 1 { reach.blocked.insert(.init(from: a, to: b)) } }
        default:
            reach = Reachability()
        }
        checkWatches()
    }

    /// The node's agent dies; what it persisted stays (and its jobs' processes run on).
    func crash(_ victim: Int) {
        trace?("\(now) crash n\(victim)")
        let dead = nodes[victim].id
        nodes[victim].instance = nil
        nodes[victim].tickGeneration += 1
        crashJobs(victim)
        // The kernel closes a dead process's sockets: followers connected to it as their
        // leader see the drop at once (if the network between them is up).
        for i in nodes.indices where i != victim && nodes[i].instance?.leader == dead && reach.canSend(victim, i) {
            queue.push(now + .milliseconds(1), .leaderDropped(node: i, leader: dead))
        }
    }

    func healAll() {
        faultsOn = false
        reach = Reachability()
        for i in nodes.indices {
            if nodes[i].instance == nil { boot(i) }
            if nodes[i].pausedUntil != nil {
                nodes[i].pausedUntil = now
                queue.push(now, .resume(node: i))
            }
        }
    }
}

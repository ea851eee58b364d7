/// The replicated state machine: what every node agrees on, changed only by committed log entries
/// applied in order (DESIGN.md §5). Deterministic: the same entries give the same state everywhere.
public struct ClusterState: Sendable, Equatable {
    /// A node as the mesh has registered it (gossip says who is alive; this says what the mesh
    /// decided about it).
    public struct Node: Sendable, Equatable {
        public var id: NodeID
        public var name: String
        public var address: String
        public var cordoned: Bool
        public var cordonReason: String
        public var registeredAt: Consensus.Index
        public var capacity: Capacity
        /// `mesh drain`: cordoned, and its running jobs are let finish, for up to
        /// `drainDeadlineMillis` (0: no limit) after the coordinator saw the drain (the log index
        /// `drainIndex`); then it requeues what still runs. Timed by the coordinator's own clock,
        /// never by comparing two machines' clocks.
        public var draining: Bool = false
        public var drainDeadlineMillis: Int64 = 0
        public var drainIndex: Consensus.Index = 0
        /// The drain is part of leaving the mesh: the node's agent lifts it when it starts again.
        public var leaving: Bool = false
        /// Cordoned by the mesh itself: its last `quarantine_after` attempts failed to start. Only
        /// canary jobs pinned to it run there; one that succeeds re-admits it.
        public var quarantined: Bool = false
        /// Consecutive attempts here that failed to start (the machine's fault, not the job's).
        public var failStreak: Int = 0
        /// The log index of the entry that quarantined it (0: never): canaries submitted after it
        /// test this quarantine, and how many of them failed sets the pause before the next.
        public var quarantinedIndex: Consensus.Index = 0

        public init(id: NodeID, name: String, address: String, cordoned: Bool = false, cordonReason: String = "",
                    registeredAt: Consensus.Index, capacity: Capacity = .init(), draining: Bool = false, drainDeadlineMillis: Int64 = 0,
                    drainIndex: Consensus.Index = 0, leaving: Bool = false, quarantined: Bool = false, failStreak: Int = 0,
                    quarantinedIndex: Consensus.Index = 0) {
            self.id = id
            self.name = name
            self.address = address
            self.cordoned = cordoned
            self.cordonReason = cordonReason
            self.registeredAt = registeredAt
            self.capacity = capacity
            self.draining = draining
            self.drainDeadlineMillis = drainDeadlineMillis
            self.drainIndex = drainIndex
            self.leaving = leaving
            self.quarantined = quarantined
            self.failStreak = failStreak
            self.quarantinedIndex = quarantinedIndex
        }
    }

    /// What a node offers jobs (from its gossip metadata when the coordinator registered it).
    public struct Capacity: Sendable, Hashable {
        public var nodeClass: String
        public var labels: [String: String]
        public var slots: Int
        public var cpus: Int
        public var memoryMB: Int
        public var gpus: Int

        public init(nodeClass: String = "", labels: [String: String] = [:], slots: Int = 1, cpus: Int = 1, memoryMB: Int = 0, gpus: Int = 0) {
            self.nodeClass = nodeClass
            self.labels = labels
            self.slots = slots
            self.cpus = cpus
            self.memoryMB = memoryMB
            self.gpus = gpus
        }
    }

    /// Identifies a client (a CLI invocation, an agent forwarding for one) for deduplication.
    public struct ClientID: Hashable, Sendable, Comparable, CustomStringConvertible {
        public var rawValue: UInt64
        public init(_ rawValue: UInt64) { self.rawValue = rawValue }
        public static func < (a: ClientID, b: ClientID) -> Bool { a.rawValue < b.rawValue }
        public var description: String { NodeID(rawValue).description }
    }

    /// The last request applied for a client, and its outcome, so a retry gets the same answer
    /// without applying twice.
    public struct Session: Sendable, Equatable {
        public var lastSequence: UInt64
        public var lastOutcome: Outcome
        public var lastIndex: Consensus.Index

        public init(lastSequence: UInt64, lastOutcome: Outcome, lastIndex: Consensus.Index) {
            self.lastSequence = lastSequence
            self.lastOutcome = lastOutcome
            self.lastIndex = lastIndex
        }
    }

    public enum Command: Sendable, Equatable {
        /// Record a member (the coordinator does this when gossip brings a new one or it changes).
        case register(NodeID, name: String, address: String, capacity: Capacity)
        case unregister(NodeID)
        case cordon(name: String, reason: String)
        /// Also ends a drain or a quarantine.
        case uncordon(name: String)
        /// Cordon, and let running jobs finish; `deadlineMillis` (0: none) after it sees the drain
        /// the coordinator requeues what still runs there. `leaving`: part of leaving the mesh.
        case drain(name: String, deadlineMillis: Int64, leaving: Bool)
        /// Stop these jobs' current attempts and put the jobs back in the queue (not counted
        /// against their retries): a drain's deadline passed.
        case requeue([JobID], reason: String, at: Int64)
        case setSetting(key: String, value: String)
        case submit(JobSpec, Provenance, at: Int64, via: NodeID)
        /// The coordinator's scheduler: attempts on nodes, decided in its term.
        case assign([Assignment])
        /// A worker's reports about an attempt; accepted only for the job's current attempt.
        case started(job: JobID, attempt: Int, node: NodeID, at: Int64)
        case finished(Report)
        /// The coordinator: the node of this attempt was out of touch longer than lease + grace.
        case lost(job: JobID, attempt: Int, reason: String, at: Int64)
        case cancel([JobID], reason: String, at: Int64)
        case retry([JobID], at: Int64)
        case hold([JobID], at: Int64)
        case release([JobID], at: Int64)
        /// A copy of an attempt's log (and results) now also lives on `node`.
        case stored(job: JobID, attempt: Int, node: NodeID)
        /// Part of a sweep; the last part creates its jobs.
        case plan(PlanChunk)

        /// Roughly how many bytes it takes on the wire (Raft sends at most a few MiB of entries
        /// per message; a plan chunk can be large).
        public var approximateSize: Int {
            switch self {
            case .submit(let spec, let provenance, _, _): 512 + provenance.diffSummary.utf8.count + spec.approximateSize
            case .plan(let chunk): 512 + chunk.name.utf8.count + chunk.provenance.diffSummary.utf8.count + chunk.jobs.reduce(0) { $0 + $1.approximateSize }
            case .assign(let a): 64 + a.count * 64
            case .cancel(let ids, let reason, _): 64 + reason.utf8.count + ids.count * 10
            case .retry(let ids, _), .hold(let ids, _), .release(let ids, _): 64 + ids.count * 10
            case .requeue(let ids, let reason, _): 64 + reason.utf8.count + ids.count * 10
            case .finished(let r): 256 + r.results.reduce(0) { $0 + 80 + $1.path.utf8.count } + r.refused.reduce(0) { $0 + 4 + $1.utf8.count }
            default: 256
            }
        }
    }

    public struct Assignment: Sendable, Equatable {
        public var job: JobID
        public var attempt: Int
        public var node: NodeID
        public var gpus: [Int]
        public var term: UInt64
        public var at: Int64

        public init(job: JobID, attempt: Int, node: NodeID, gpus: [Int], term: UInt64, at: Int64) {
            self.job = job
            self.attempt = attempt
            self.node = node
            self.gpus = gpus
            self.term = term
            self.at = at
        }
    }

    /// How an attempt ended, as its worker reports it.
    public struct Report: Sendable, Equatable {
        public var job: JobID
        public var attempt: Int
        public var node: NodeID
        public var outcome: AttemptOutcome
        public var results: [ResultFile]
        public var resultsBundle: BlobRef?
        public var logBytes: UInt64
        public var at: Int64
        /// Result paths refused, with why (at most `Limits.maxRefused`, then a count).
        public var refused: [String]

        public init(job: JobID, attempt: Int, node: NodeID, outcome: AttemptOutcome, results: [ResultFile] = [],
                    resultsBundle: BlobRef? = nil, logBytes: UInt64 = 0, at: Int64, refused: [String] = []) {
            self.refused = refused
            self.job = job
            self.attempt = attempt
            self.node = node
            self.outcome = outcome
            self.results = results
            self.resultsBundle = resultsBundle
            self.logBytes = logBytes
            self.at = at
        }
    }

    /// A command with the (client, sequence) that makes retries safe.
    public struct Request: Sendable, Equatable {
        public var client: ClientID
        public var sequence: UInt64
        public var command: Command

        public init(client: ClientID, sequence: UInt64, command: Command) {
            self.client = client
            self.sequence = sequence
            self.command = command
        }
    }

    public enum Outcome: Sendable, Equatable {
        case done(String)
        /// Done, and these jobs were created.
        case created([JobID], String)
        case rejected(String)

        public var isDone: Bool { if case .rejected = self { false } else { true } }
        public var message: String {
            switch self {
            case .done(let m), .created(_, let m), .rejected(let m): m
            }
        }
    }

    public internal(set) var nodes: [NodeID: Node] = [:]
    public private(set) var sessions: [ClientID: Session] = [:]
    public private(set) var settings: [String: String] = [:]

    /// The mesh setting that switches fencing off, honoured by debug builds only.
    public static let unfencedSetting = "debug_unfenced"

    /// Debug builds only, with `mesh set debug_unfenced 1`: stale reports are accepted, workers keep
    /// superseded attempts running and supervisors ignore the lease, so the same job can run twice
    /// at once. It exists so the chaos harness can prove it notices; a release build never turns it on.
    public var fencingDisabled: Bool { Self.debugBuild && settings[Self.unfencedSetting] == "1" }

    public static var debugBuild: Bool {
        #if DEBUG
        true
        #else
        false
        #endif
    }
    public private(set) var appliedIndex: Consensus.Index = 0
    /// Every job; changed only through `store` (which keeps the indexes below).
    public private(set) var jobs: [JobID: Job] = [:]
    public internal(set) var nextJobID: JobID = 1
    /// Assigned and running jobs, and jobs waiting for others: derived from `jobs`, so that
    /// workers, the scheduler and dependency checks never scan every job the mesh has run.
    private(set) var activeIDs: Set<JobID> = []
    private(set) var waitingIDs: Set<JobID> = []
    /// The ids of the jobs waiting for a node.
    public private(set) var pendingIDs: Set<JobID> = []
    /// How many jobs are in each state (kept by `store`: `mesh status` shows counts, not lists).
    public private(set) var stateCounts: [JobState: Int] = [:]
    /// The newest job with each identity (plans reuse them) and each job's dependents.
    private(set) var identities: [String: JobID] = [:]
    private(set) var dependents: [JobID: [JobID]] = [:]
    /// The canaries pinned to each node, oldest first (derived from `jobs`, like the indexes above).
    private(set) var canaryIDs: [NodeID: [JobID]] = [:]
    public internal(set) var sweeps: [SweepID: Sweep] = [:]
    public internal(set) var nextSweepID: SweepID = 1

    /// Sessions untouched for this many entries are forgotten.
    public static let sessionRetention: Consensus.Index = 100_000

    public init() {}

    /// Applies a committed request. A request whose sequence is not above its client's last gets
    /// the stored outcome of the last one (a retry), and changes nothing.
    public mutating func apply(_ request: Request, at index: Consensus.Index) -> Outcome {
        appliedIndex = index
        if let s = sessions[request.client], request.sequence <= s.lastSequence {
            return request.sequence == s.lastSequence ? s.lastOutcome : .rejected("request \(request.sequence) is older than this client's last")
        }
        // Checked again here, whatever the proposer checked: an entry out of bounds is refused and
        // changes nothing (an older release, or a hostile client, may have let it into the log).
        let outcome = Self.problem(request.command).map { Outcome.rejected($0) } ?? execute(request.command, at: index)
        sessions[request.client] = Session(lastSequence: request.sequence, lastOutcome: outcome, lastIndex: index)
        if index % 1000 == 0 {
            expireSessions(at: index)
            abandonIdleSweeps(at: index)
        }
        return outcome
    }

    /// Entries that change no state (no-ops, configurations) still advance the applied index.
    public mutating func advance(to index: Consensus.Index) {
        appliedIndex = Swift.max(appliedIndex, index)
    }

    public func node(named name: String) -> Node? {
        nodes.values.filter { $0.name == name }.max { $0.registeredAt < $1.registeredAt }
    }

    private mutating func execute(_ command: Command, at index: Consensus.Index) -> Outcome {
        switch command {
        case .register(let id, let name, let address, let capacity):
            if var n = nodes[id] {
                n.name = name
                n.address = address
                n.capacity = capacity
                nodes[id] = n
                return .done("\(name) updated")
            }
            nodes[id] = Node(id: id, name: name, address: address, registeredAt: index, capacity: capacity)
            return .done("\(name) registered")
        case .unregister(let id):
            guard let n = nodes.removeValue(forKey: id) else { return .rejected("no node \(id)") }
            return .done("\(n.name) removed")
        case .cordon(let name, let reason):
            guard var n = node(named: name) else { return .rejected("no node named '\(name)' in the mesh") }
            // A cordon by hand takes over from a quarantine (its canary must not re-admit a node
            // someone is mending) and from a drain (no deadline, no leaving).
            if n.cordoned && !n.quarantined && !n.draining { return .done("\(name) was already cordoned") }
            n.cordoned = true
            n.cordonReason = reason
            n.quarantined = false
            n.draining = false
            n.drainDeadlineMillis = 0
            n.leaving = false
            nodes[n.id] = n
            return .done("\(name) cordoned: no new jobs will start there")
        case .uncordon(let name):
            guard var n = node(named: name) else { return .rejected("no node named '\(name)' in the mesh") }
            if !n.cordoned { return .done("\(name) was not cordoned") }
            n.cordoned = false
            n.cordonReason = ""
            n.draining = false
            n.drainDeadlineMillis = 0
            n.leaving = false
            n.quarantined = false
            n.failStreak = 0
            nodes[n.id] = n
            return .done("\(name) uncordoned: it takes jobs again")
        case .drain(let name, let deadline, let leaving):
            guard var n = node(named: name) else { return .rejected("no node named '\(name)' in the mesh") }
            let running = usage()[n.id]?.jobs.count ?? 0
            if n.draining && n.drainDeadlineMillis == deadline && n.leaving == leaving {
                return .done("\(name) was already draining (\(running) running)")
            }
            n.cordoned = true
            n.draining = true
            n.drainDeadlineMillis = deadline
            n.drainIndex = index
            n.leaving = leaving
            n.quarantined = false
            let until = deadline > 0 ? "; what still runs in \((deadline + 999) / 1000) s is requeued" : ""
            n.cordonReason = "draining"
            nodes[n.id] = n
            return .done("\(name) draining: \(running) job\(running == 1 ? "" : "s") running there may finish, no new ones start\(until)")
        case .setSetting(let key, let value):
            // (Checked by the CLI and the agent already; an entry from elsewhere is checked too.)
            if let problem = Self.settingProblem(key: key, value: value) { return .rejected(problem) }
            settings[key] = value
            return .done("\(key) = \(value)")
        case .submit, .assign, .started, .finished, .lost, .cancel, .retry, .hold, .release, .stored, .plan, .requeue:
            return executeJob(command, at: index)
        }
    }

    private mutating func expireSessions(at index: Consensus.Index) {
        guard index > Self.sessionRetention else { return }
        sessions = sessions.filter { $0.value.lastIndex >= index || index - $0.value.lastIndex <= Self.sessionRetention }
    }

    /// Rebuilds a state from its parts (for restoring a snapshot).
    public init(nodes: [NodeID: Node], sessions: [ClientID: Session], settings: [String: String], appliedIndex: Consensus.Index,
                jobs: [JobID: Job] = [:], nextJobID: JobID = 1, sweeps: [SweepID: Sweep] = [:], nextSweepID: SweepID = 1) {
        self.nodes = nodes
        self.sessions = sessions
        self.settings = settings
        self.appliedIndex = appliedIndex
        self.nextJobID = nextJobID
        self.sweeps = sweeps
        self.nextSweepID = nextSweepID
        for job in jobs.values.sorted(by: { $0.id < $1.id }) { store(job) }
    }

    mutating func store(_ job: Job) {
        let old = jobs.updateValue(job, forKey: job.id)
        // (No zero counts kept: a state restored from a snapshot must equal the one it was taken of.)
        if let old { let c = stateCounts[old.state, default: 0] - 1; stateCounts[old.state] = c == 0 ? nil : c }
        stateCounts[job.state, default: 0] += 1
        if old == nil {
            if !job.spec.identity.isEmpty { identities[job.spec.identity] = job.id }
            for d in job.spec.after { dependents[d, default: []].append(job.id) }
            if job.spec.canary, let node = job.spec.node { canaryIDs[node, default: []].append(job.id) }
        }
        if job.state.isActive { activeIDs.insert(job.id) } else { activeIDs.remove(job.id) }
        if job.state == .waiting { waitingIDs.insert(job.id) } else { waitingIDs.remove(job.id) }
        if job.state == .pending { pendingIDs.insert(job.id) } else { pendingIDs.remove(job.id) }
    }
}

/// The coordinator's care of the lab's machines, besides scheduling (DESIGN.md §2: MeshCore
/// decides, the agent acts): drains whose deadline has passed, canaries that test quarantined
/// nodes, and `scale_up` when jobs have waited too long for capacity.
///
/// Every wait is timed on the coordinator's own monotonic clock from when *this* coordinator
/// first saw what it measures (a drain, a quarantine, a canary's end, a job waiting), never by
/// comparing two machines' clocks. A newly elected coordinator therefore starts counting anew:
/// things happen later after a failover, never earlier.
public enum LabControl {
    /// The mesh settings this part reads (`mesh set`), with their defaults.
    public struct Settings: Sendable, Equatable {
        /// Before the first canary of a quarantine; doubled after each canary that failed.
        public var canaryPause: Duration = .seconds(30)
        /// The longest pause between two canaries.
        public var canaryPauseLimit: Duration = .seconds(3600)
        /// The shell command to run for more capacity (empty: none).
        public var scaleUp: String = ""
        public var scaleUpAfter: Duration = .seconds(60)
        public var scaleUpMax: Int = 1
        public var scaleUpPause: Duration = .seconds(120)
        public var scaleUpTimeout: Duration = .seconds(600)

        public init() {}

        /// The settings as the mesh has them.
        public init(_ state: ClusterState) {
            if let v = state.duration(.quarantineCanarySeconds) { canaryPause = v }
            scaleUp = state.text(.scaleUp)
            if let v = state.duration(.scaleUpAfterSeconds) { scaleUpAfter = v }
            if let v = state.setting(.scaleUpMax) { scaleUpMax = v }
            if let v = state.duration(.scaleUpPauseSeconds) { scaleUpPause = v }
            if let v = state.duration(.scaleUpTimeoutSeconds) { scaleUpTimeout = v }
        }
    }

    /// A scale-up for the shell to run: the command, and what it is for (its environment).
    public struct ScaleUp: Sendable, Equatable {
        /// This coordinator's number for it (for `scaleUpEnded` and `.stopScaleUp`).
        public var id: Int
        public var command: String
        /// Jobs that have waited longer than `scale_up_after_seconds`.
        public var waiting: Int
        /// The first of them (the oldest waiting), and what it asks for.
        public var job: JobID
        public var nodeClass: String
        public var slots: Int
        public var gpus: Int
    }

    public enum Directive: Sendable, Equatable {
        /// Propose this command (the shell adds its client id and sequence).
        case propose(ClusterState.Command)
        /// Run the scale-up command (`/bin/sh -c`, in a process group of its own).
        case startScaleUp(ScaleUp)
        /// The scale-up's command is still running after `scale_up_timeout_seconds`: stop its
        /// process group.
        case stopScaleUp(Int)
    }

    public struct Instance: Sendable {
        private var term: UInt64 = 0
        /// When this coordinator first saw each node's current drain (by its log index).
        private var drainSeen: [NodeID: (index: Consensus.Index, at: Instant)] = [:]
        /// Requeues proposed, so that each is proposed once (again only if it never committed).
        private var requeued: [JobID: Instant] = [:]
        /// When this coordinator first saw each node's current quarantine (by its log index).
        private var quarantineSeen: [NodeID: (index: Consensus.Index, at: Instant)] = [:]
        /// When this coordinator first saw each canary ended.
        private var canaryEnded: [JobID: Instant] = [:]
        /// Canaries proposed and not yet seen in the state.
        private var canaryProposed: [NodeID: Instant] = [:]
        /// When this coordinator first saw each job waiting for a node (kept up to date from the
        /// state's pending ids, without copying every job each tick: ten thousand may wait).
        private var waitingSince: [JobID: Instant] = [:]
        /// Pending jobs a new node would not help (canaries, jobs pinned to a node).
        private var pinned: Set<JobID> = []
        private struct InFlight: Sendable {
            var started: Instant
            var running: Bool
        }
        /// Scale-ups that count against `scale_up_max`: from their start until a node registers,
        /// their command fails, or `scale_up_timeout_seconds` pass.
        private var inFlight: [Int: InFlight] = [:]
        private var lastScaleUp: Instant?
        private var nextScaleUp = 1
        /// The nodes registered at the last tick: a new one ends the oldest scale-up in flight.
        private var registered: Set<NodeID> = []

        public init() {}

        /// Scale-ups in flight (for tests and status).
        public var scaleUpsInFlight: Int { inFlight.count }

        /// Once a second or so on the coordinator, after it has applied its own term's first entry.
        /// `ready`: the members gossip says are alive and done with their machine setup; `me`: this
        /// node (canaries are submitted through it); `at`: wall-clock milliseconds for the records.
        public mutating func tick(_ state: ClusterState, term: UInt64, ready: Set<NodeID>, me: NodeID, now: Instant, at: Int64)
            -> [Directive]
        {
            if term != self.term {
                // A new coordinator: what the last one saw is not ours to trust; count anew. It may
                // have just run scale_up for the jobs waiting now: a pause first, as after our own.
                self = Instance()
                self.term = term
                lastScaleUp = now
                registered = Set(state.nodes.keys)
            }
            let settings = Settings(state)
            var out = drains(state, now: now, at: at)
            out += canaries(state, settings: settings, ready: ready, me: me, now: now, at: at)
            out += scaleUp(state, settings: settings, now: now)
            return out
        }

        /// The shell's word that a scale-up command ended (`succeeded`: exit 0). One that failed no
        /// longer counts as in flight; one that succeeded counts until a node registers (a command
        /// that only asks a cloud for a machine ends long before the machine joins).
        public mutating func scaleUpEnded(_ id: Int, succeeded: Bool) {
            if succeeded { inFlight[id]?.running = false } else { inFlight[id] = nil }
        }

        // MARK: Drains

        /// Drains whose deadline passed: requeue what still runs there.
        private mutating func drains(_ state: ClusterState, now: Instant, at: Int64) -> [Directive] {
            var out: [Directive] = []
            var active: [NodeID: [Job]]?
            let draining = state.nodes.values.filter { $0.draining && $0.drainDeadlineMillis > 0 }.sorted { $0.id < $1.id }
            drainSeen = drainSeen.filter { id, _ in draining.contains { $0.id == id } }
            for n in draining {
                if drainSeen[n.id]?.index != n.drainIndex { drainSeen[n.id] = (n.drainIndex, now) }
                guard let seen = drainSeen[n.id], now - seen.at >= .milliseconds(n.drainDeadlineMillis) else { continue }
                if active == nil { active = Dictionary(grouping: state.activeJobs, by: { $0.current?.node ?? NodeID(0) }) }
                let ids = (active?[n.id] ?? []).filter { job in
                    // (proposed already: again only if it has not committed within 5 s)
                    !job.cancelRequested && !job.requeueRequested && requeued[job.id].map { now - $0 > .seconds(5) } != false
                }.map(\.id)
                guard !ids.isEmpty else { continue }
                for j in ids { requeued[j] = now }
                out.append(.propose(.requeue(ids, reason: "the drain deadline of \(n.name) passed", at: at)))
            }
            requeued = requeued.filter { now - $0.value < .seconds(60) }
            return out
        }

        // MARK: Canaries

        /// One canary at a time for each quarantined node that is ready: `canaryPause` after this
        /// coordinator saw the quarantine, then after each failed canary twice as long as before it
        /// (up to `canaryPauseLimit`), timed from when it saw that canary end. Canaries waiting for
        /// a node that is no longer quarantined are cancelled.
        private mutating func canaries(_ state: ClusterState, settings: Settings, ready: Set<NodeID>, me: NodeID, now: Instant, at: Int64)
            -> [Directive]
        {
            var out: [Directive] = []
            let stale = state.pendingCanaries.filter { job in
                job.spec.node.map { state.nodes[$0]?.quarantined != true } ?? true
            }.map(\.id)
            if !stale.isEmpty { out.append(.propose(.cancel(stale, reason: "its node is no longer quarantined", at: at))) }
            let quarantined = state.nodes.values.filter(\.quarantined).sorted { $0.id < $1.id }
            quarantineSeen = quarantineSeen.filter { id, _ in quarantined.contains { $0.id == id } }
            canaryProposed = canaryProposed.filter { id, _ in quarantined.contains { $0.id == id } }
            var live: Set<JobID> = []
            for n in quarantined {
                if quarantineSeen[n.id]?.index != n.quarantinedIndex { quarantineSeen[n.id] = (n.quarantinedIndex, now) }
                let tests = state.canaries(of: n.id)
                live.formUnion(tests.map(\.id))
                if let proposed = canaryProposed[n.id] {
                    // Until it shows in the state (or plainly never will).
                    if tests.contains(where: { !$0.state.isTerminal }) || now - proposed > .seconds(10) { canaryProposed[n.id] = nil } else { continue }
                }
                for t in tests where t.state.isTerminal && canaryEnded[t.id] == nil { canaryEnded[t.id] = now }
                guard !tests.contains(where: { !$0.state.isTerminal }), ready.contains(n.id) else { continue }
                let failures = tests.filter { $0.state == .failed || $0.state == .cancelled }.count
                let from = tests.last.flatMap { canaryEnded[$0.id] } ?? quarantineSeen[n.id]!.at
                let factor = Double(1 << Swift.min(failures, 20))
                let wait = Swift.min(settings.canaryPauseLimit, settings.canaryPause.scaled(factor))
                guard now - from >= wait else { continue }
                canaryProposed[n.id] = now
                let spec = JobSpec(name: "canary for \(n.name)", command: ["/bin/sh", "-c", "true"], priority: Int(Int32.max),
                                   node: n.id, canary: true)
                out.append(.propose(.submit(spec, Provenance(submitter: "mesh (quarantine)"), at: at, via: me)))
            }
            canaryEnded = canaryEnded.filter { live.contains($0.key) }
            return out
        }

        // MARK: Scale-up

        private mutating func scaleUp(_ state: ClusterState, settings: Settings, now: Instant) -> [Directive] {
            var out: [Directive] = []
            // A node that registered since the last tick is (likely) what the oldest scale-up
            // asked for.
            let nodes = Set(state.nodes.keys)
            for _ in nodes.subtracting(registered) {
                guard let oldest = inFlight.min(by: { ($0.value.started, $0.key) < ($1.value.started, $1.key) }) else { break }
                inFlight[oldest.key] = nil
            }
            registered = nodes
            for (id, f) in inFlight.sorted(by: { $0.key < $1.key }) where now - f.started >= settings.scaleUpTimeout {
                inFlight[id] = nil
                if f.running { out.append(.stopScaleUp(id)) }
            }
            guard !settings.scaleUp.isEmpty else {
                waitingSince.removeAll()
                pinned.removeAll()
                return out
            }
            // Jobs waiting for a node, since this coordinator first saw them so. (Canaries and jobs
            // pinned to a node wait for that node: a new one would not help.)
            let pending = state.pendingIDs
            if waitingSince.count + pinned.count != pending.count || waitingSince.keys.contains(where: { !pending.contains($0) })
                || pinned.contains(where: { !pending.contains($0) }) {
                for id in waitingSince.keys.filter({ !pending.contains($0) }) { waitingSince[id] = nil }
                pinned = pinned.filter { pending.contains($0) }
                for id in pending where waitingSince[id] == nil && !pinned.contains(id) {
                    if let spec = state.jobs[id]?.spec, spec.canary || spec.node != nil { pinned.insert(id) } else { waitingSince[id] = now }
                }
            }
            var waiting = 0
            var oldest: JobID?
            for (id, since) in waitingSince where now - since >= settings.scaleUpAfter {
                waiting += 1
                if oldest.map({ id < $0 }) ?? true { oldest = id }
            }
            guard let oldest, let first = state.jobs[oldest], inFlight.count < settings.scaleUpMax else { return out }
            if let last = lastScaleUp, now - last < settings.scaleUpPause { return out }
            let id = nextScaleUp
            nextScaleUp += 1
            lastScaleUp = now
            inFlight[id] = InFlight(started: now, running: true)
            out.append(.startScaleUp(ScaleUp(id: id, command: settings.scaleUp, waiting: waiting, job: first.id,
                                             nodeClass: first.spec.nodeClass, slots: first.spec.resources.slots,
                                             gpus: first.spec.resources.gpus)))
            return out
        }
    }
}

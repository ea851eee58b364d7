extension ClusterState {
    /// Attempts lost with their node before the job is given up on.
    public static let maxLostAttempts = 5

    /// What is in use on each node: the current attempts of assigned and running jobs.
    public struct Usage: Sendable, Equatable {
        public var slots = 0
        public var cpus = 0
        public var memoryMB = 0
        public var gpus: Set<Int> = []
        public var jobs: [JobID] = []

        public init() {}
    }

    public func usage() -> [NodeID: Usage] {
        var u: [NodeID: Usage] = [:]
        for id in activeIDs.sorted() {
            let job = jobs[id]!
            guard let a = job.current else { continue }
            var n = u[a.node, default: Usage()]
            n.slots += job.spec.resources.slots
            n.cpus += job.spec.resources.cpus
            n.memoryMB += job.spec.resources.memoryMB
            n.gpus.formUnion(a.gpus)
            n.jobs.append(job.id)
            u[a.node] = n
        }
        return u
    }

    /// Jobs by id, in order.
    public var jobList: [Job] { jobs.values.sorted { $0.id < $1.id } }

    /// Assigned and running jobs by id, in order (what workers and loss detection look at; far
    /// fewer than all the jobs a mesh has ever run).
    public var activeJobs: [Job] { activeIDs.sorted().compactMap { jobs[$0] } }

    /// Jobs waiting for a node, by id.
    public var pendingJobs: [Job] { pendingIDs.sorted().compactMap { jobs[$0] } }

    /// Canaries waiting for their node, by id (few: one a quarantined node at a time).
    public var pendingCanaries: [Job] {
        canaryIDs.values.joined().sorted().compactMap { id in jobs[id].flatMap { $0.state == .pending ? $0 : nil } }
    }

    /// The canaries of a node's current quarantine (submitted after it began), oldest first.
    public func canaries(of node: NodeID) -> [Job] {
        guard let n = nodes[node], n.quarantinedIndex > 0 else { return [] }
        return (canaryIDs[node] ?? []).compactMap { jobs[$0] }.filter { ($0.history.first?.index ?? 0) > n.quarantinedIndex }
    }

    /// Why no registered node could ever run `spec`, or nil if some could.
    public func impossible(_ spec: JobSpec) -> String? {
        guard !nodes.isEmpty else { return "no node is registered yet" }
        if let pinned = spec.node {
            guard let n = nodes[pinned] else { return "node \(pinned) is not registered" }
            return Self.mismatch(spec, n.capacity).map { "\(n.name): \($0)" }
        }
        // The common answer first, without sorting or building messages.
        if nodes.values.contains(where: { Self.fits(spec, $0.capacity) }) { return nil }
        var closest = ""
        for n in nodes.values.sorted(by: { $0.id < $1.id }) {
            if let why = Self.mismatch(spec, n.capacity) { closest = closest.isEmpty ? "\(n.name): \(why)" : closest } else { return nil }
        }
        return "no node of the mesh could ever run it (e.g. \(closest))"
    }

    /// Whether a node with `capacity` could ever run `spec`: `mismatch(spec, capacity) == nil`,
    /// without building the reason.
    public static func fits(_ spec: JobSpec, _ capacity: Capacity) -> Bool {
        guard matchesClassAndLabels(spec, capacity) else { return false }
        let r = spec.resources
        return r.slots <= capacity.slots && r.gpus <= capacity.gpus && r.cpus <= capacity.cpus
            && !(r.memoryMB > 0 && capacity.memoryMB > 0 && r.memoryMB > capacity.memoryMB)
    }

    /// The class and label part of `fits`.
    static func matchesClassAndLabels(_ spec: JobSpec, _ capacity: Capacity) -> Bool {
        if !spec.nodeClass.isEmpty && spec.nodeClass != capacity.nodeClass { return false }
        for (k, v) in spec.labels where capacity.labels[k] != v { return false }
        return true
    }

    /// Why a node with `capacity` can never run `spec` (its class, labels or size), or nil.
    public static func mismatch(_ spec: JobSpec, _ capacity: Capacity) -> String? {
        if !spec.nodeClass.isEmpty && spec.nodeClass != capacity.nodeClass {
            return "class '\(capacity.nodeClass)', not '\(spec.nodeClass)'"
        }
        for (k, v) in spec.labels.sorted(by: { $0.key < $1.key }) where capacity.labels[k] != v {
            return "label \(k)=\(capacity.labels[k] ?? "(none)"), not \(v)"
        }
        let r = spec.resources
        if r.slots > capacity.slots { return "\(capacity.slots) slot\(capacity.slots == 1 ? "" : "s"), not \(r.slots)" }
        if r.gpus > capacity.gpus { return "\(capacity.gpus) GPU\(capacity.gpus == 1 ? "" : "s"), not \(r.gpus)" }
        if r.cpus > capacity.cpus { return "\(capacity.cpus) CPUs, not \(r.cpus)" }
        if r.memoryMB > 0 && capacity.memoryMB > 0 && r.memoryMB > capacity.memoryMB {
            return "\(capacity.memoryMB) MiB of memory, not \(r.memoryMB)"
        }
        return nil
    }

    // MARK: Applying job commands

    mutating func executeJob(_ command: Command, at index: Consensus.Index) -> Outcome {
        switch command {
        case .submit(let spec, let provenance, let at, let via):
            return submit(spec, provenance, at: at, via: via, index: index)
        case .assign(let assignments):
            var done: [JobID] = []
            var used = usage()  // once per batch, kept up to date by each assignment
            for a in assignments where assign(a, used: &used, index: index) { done.append(a.job) }
            return .done("assigned \(done.count) of \(assignments.count)")
        case .started(let id, let attempt, let node, let at):
            guard var job = jobs[id], let current = job.current, current.number == attempt, current.node == node,
                  job.state.isActive else {
                return .rejected(staleReport(id, attempt, node))
            }
            if job.state == .running { return .done("already running") }
            job.attempts[job.attempts.count - 1].startedAt = at
            Self.transition(&job, .running, "attempt \(attempt) started on \(name(node))", at: at, index: index)
            store(job)
            return .done("job \(id) running")
        case .finished(let r):
            guard var job = jobs[r.job], let current = job.current, current.number == r.attempt, current.node == r.node,
                  job.state.isActive else {
                if fencingDisabled { return acceptUnfenced(r, index: index) }
                return .rejected(staleReport(r.job, r.attempt, r.node))
            }
            var a = current
            a.endedAt = r.at
            a.outcome = r.outcome
            a.logBytes = r.logBytes
            a.refused = r.refused
            if !a.logHolders.contains(r.node) { a.logHolders.append(r.node) }
            job.attempts[job.attempts.count - 1] = a
            if r.outcome.succeeded {
                job.results = r.results
                job.resultsBundle = r.resultsBundle
            }
            end(&job, attempt: r.attempt, outcome: r.outcome, at: r.at, index: index)
            store(job)
            account(r.outcome, on: r.node, canary: job.spec.canary, index: index)
            settleDependents(of: r.job, at: r.at, index: index)
            return .done("job \(r.job) \(job.state.rawValue)")
        case .lost(let id, let attempt, let reason, let at):
            guard var job = jobs[id], let current = job.current, current.number == attempt, job.state.isActive else {
                return .rejected("attempt \(attempt) of job \(id) is not on a node")
            }
            job.attempts[job.attempts.count - 1].endedAt = at
            job.attempts[job.attempts.count - 1].outcome = .lost(reason)
            end(&job, attempt: attempt, outcome: .lost(reason), at: at, index: index)
            store(job)
            settleDependents(of: id, at: at, index: index)
            return .done("job \(id) \(job.state.rawValue)")
        case .cancel(let ids, let reason, let at):
            let (outcome, changed) = update(ids) { job, _ in
                switch job.state {
                case .pending, .held, .waiting:
                    Self.transition(&job, .cancelled, reason.isEmpty ? "cancelled" : "cancelled: \(reason)", at: at, index: index)
                    return nil
                case .assigned, .running:
                    job.cancelRequested = true
                    job.reason = "cancelling\(reason.isEmpty ? "" : " (\(reason))"): its node stops it"
                    job.history.append(JobEvent(state: job.state, reason: job.reason, at: at, index: index))
                    return nil
                case .succeeded, .failed, .cancelled:
                    return "job \(job.id) has ended (\(job.state.rawValue))"
                }
            }
            for id in changed { settleDependents(of: id, at: at, index: index) }
            return outcome
        case .requeue(let ids, let reason, let at):
            return update(ids) { job, _ in
                guard job.state.isActive else { return "job \(job.id) is \(job.state.rawValue), not on a node" }
                guard !job.cancelRequested, !job.requeueRequested else { return "job \(job.id) is already being stopped" }
                job.requeueRequested = true
                job.reason = "requeueing (\(reason)): its node stops it"
                job.history.append(JobEvent(state: job.state, reason: job.reason, at: at, index: index))
                return nil
            }.outcome
        case .retry(let ids, let at):
            let (outcome, changed) = update(ids.sorted()) { job, state in
                guard job.state == .failed || job.state == .cancelled else { return "job \(job.id) is \(job.state.rawValue), not failed or cancelled" }
                return state.revive(&job, "retried", at: at, index: index)
            }
            for id in changed { reviveDependents(of: id, at: at, index: index) }
            return outcome
        case .hold(let ids, let at):
            return update(ids) { job, _ in
                guard job.state == .pending || job.state == .waiting else { return "job \(job.id) is \(job.state.rawValue); only waiting jobs can be held" }
                Self.transition(&job, .held, "held", at: at, index: index)
                return nil
            }.outcome
        case .release(let ids, let at):
            return update(ids) { job, state in
                guard job.state == .held else { return "job \(job.id) is \(job.state.rawValue), not held" }
                Self.transition(&job, state.blockedState(job) ?? .pending, "released", at: at, index: index)
                return nil
            }.outcome
        case .stored(let id, let attempt, let node):
            guard var job = jobs[id], let i = job.attempts.firstIndex(where: { $0.number == attempt }) else {
                return .rejected("no attempt \(attempt) of job \(id)")
            }
            if !job.attempts[i].logHolders.contains(node) { job.attempts[i].logHolders.append(node) }
            if i == job.attempts.count - 1, var bundle = job.resultsBundle, !bundle.holders.contains(node) {
                bundle.holders.append(node)
                job.resultsBundle = bundle
            }
            store(job)
            return .done("stored")
        case .plan(let chunk):
            return plan(chunk, index: index)
        default:
            return .rejected("not a job command")
        }
    }

    private mutating func submit(_ spec: JobSpec, _ provenance: Provenance, at: Int64, via: NodeID, index: Consensus.Index) -> Outcome {
        if let problem = Self.invalid(spec) { return .rejected(problem) }
        for d in spec.after where jobs[d] == nil { return .rejected("--after \(d): no such job") }
        // One canary at a time per node, however many coordinators (or retries) propose one.
        if spec.canary, let node = spec.node, (canaryIDs[node] ?? []).contains(where: { jobs[$0]?.state.isTerminal == false }) {
            return .rejected("a canary for \(name(node)) is already waiting or running")
        }
        if let why = impossible(spec) { return .rejected("cannot run: \(why)") }
        guard nextJobID < Limits.maxID else { return .rejected("the mesh has used up its job numbers") }
        let id = create(spec, provenance, at: at, via: via, index: index)
        return .created([id], "job \(id) \(jobs[id]!.state.rawValue)")
    }

    /// Creates a job (its dependencies exist); returns its id.
    mutating func create(_ spec: JobSpec, _ provenance: Provenance, at: Int64, via: NodeID, index: Consensus.Index) -> JobID {
        let id = nextJobID
        nextJobID += 1
        var job = Job(
            id: id, spec: spec, provenance: provenance, submittedAt: at, submittedVia: via, state: .pending, reason: "",
            history: [], attempts: [], results: [], resultsBundle: nil, cancelRequested: false, lostAttempts: 0, failedAttempts: 0)
        if spec.held {
            Self.transition(&job, .held, "submitted held", at: at, index: index)
        } else if let blocked = blockedState(job) {
            if blocked == .waiting {
                Self.transition(&job, .waiting, "waiting for \(spec.after.map(String.init).joined(separator: ", "))", at: at, index: index)
            } else {
                Self.transition(&job, .failed, dependencyFailure(job), at: at, index: index)
                job.dependencyFailed = true
            }
        } else {
            Self.transition(&job, .pending, "submitted", at: at, index: index)
        }
        store(job)
        return id
    }

    /// A failed or cancelled job runs again (waiting first if a dependency has still to run); the
    /// problem if one of its dependencies failed.
    func revive(_ job: inout Job, _ why: String, at: Int64, index: Consensus.Index) -> String? {
        let blocked = blockedState(job)
        if blocked == .failed { return "job \(job.id) cannot run: \(dependencyFailure(job)) (retry that one)" }
        job.failedAttempts = 0
        job.lostAttempts = 0
        job.cancelRequested = false
        job.requeueRequested = false
        Self.transition(&job, blocked ?? .pending, why, at: at, index: index)
        return nil
    }

    /// Jobs that failed only because `id` did come back to waiting for it, now that it runs again.
    mutating func reviveDependents(of id: JobID, at: Int64, index: Consensus.Index) {
        for d in dependents[id] ?? [] {
            guard var job = jobs[d], job.state == .failed, job.dependencyFailed, blockedState(job) == .waiting else { continue }
            Self.transition(&job, .waiting, "dependency \(id) runs again", at: at, index: index)
            store(job)
            reviveDependents(of: d, at: at, index: index)
        }
    }

    /// `used`: `usage()` as it stands, updated here when the assignment is taken.
    private mutating func assign(_ a: Assignment, used: inout [NodeID: Usage], index: Consensus.Index) -> Bool {
        guard var job = jobs[a.job], job.state == .pending, a.attempt == job.attempts.count + 1,
              let node = nodes[a.node], !node.cordoned || Self.isCanary(job.spec, for: node),
              job.spec.node == nil || job.spec.node == a.node, Self.fits(job.spec, node.capacity) else { return false }
        // Re-check room: two plans in flight must not overcommit a node.
        var u = used[a.node] ?? Usage()
        let r = job.spec.resources
        guard u.slots + r.slots <= node.capacity.slots, a.gpus.count == r.gpus, u.gpus.isDisjoint(with: a.gpus),
              a.gpus.allSatisfy({ $0 >= 0 && $0 < node.capacity.gpus }) else { return false }
        job.attempts.append(Attempt(number: a.attempt, node: a.node, term: a.term, gpus: a.gpus, assignedAt: a.at))
        Self.transition(&job, .assigned, "attempt \(a.attempt) assigned to \(node.name)", at: a.at, index: index)
        store(job)
        u.slots += r.slots
        u.cpus += r.cpus
        u.memoryMB += r.memoryMB
        u.gpus.formUnion(a.gpus)
        u.jobs.append(job.id)
        used[a.node] = u
        return true
    }

    /// Where a job goes when an attempt ends.
    /// Debug builds with `debug_unfenced` set: a report for an attempt that is no longer current is
    /// taken as if it were (the bug fencing prevents, for the chaos harness to catch).
    private mutating func acceptUnfenced(_ r: Report, index: Consensus.Index) -> Outcome {
        guard var job = jobs[r.job], !job.state.isTerminal,
              let i = job.attempts.firstIndex(where: { $0.number == r.attempt && $0.node == r.node }) else {
            return .rejected(staleReport(r.job, r.attempt, r.node))
        }
        job.attempts[i].endedAt = r.at
        job.attempts[i].outcome = r.outcome
        end(&job, attempt: r.attempt, outcome: r.outcome, at: r.at, index: index)
        store(job)
        settleDependents(of: r.job, at: r.at, index: index)
        return .done("job \(r.job) \(job.state.rawValue) (a stale report accepted: fencing is off)")
    }

    private mutating func end(_ job: inout Job, attempt: Int, outcome: AttemptOutcome, at: Int64, index: Consensus.Index) {
        let place = "attempt \(attempt)"
        let requeue = job.requeueRequested
        job.requeueRequested = false
        if job.cancelRequested {
            Self.transition(&job, .cancelled, "cancelled (\(place) \(describe(outcome)))", at: at, index: index)
        } else if outcome.succeeded {
            Self.transition(&job, .succeeded, "\(place) exited 0", at: at, index: index)
        } else if job.spec.canary {
            Self.transition(&job, .failed, "canary: \(place) \(describe(outcome))", at: at, index: index)
        } else if requeue {
            // Stopped on purpose (SIGTERM often makes a job exit non-zero): not the job's failure.
            Self.transition(&job, .pending, "\(place) stopped by a drain's deadline (\(describe(outcome))); requeued", at: at, index: index)
        } else if outcome.isJobFailure {
            job.failedAttempts += 1
            if job.failedAttempts <= job.spec.retries {
                Self.transition(&job, .pending, "\(place) \(describe(outcome)); retry \(job.failedAttempts) of \(job.spec.retries)", at: at, index: index)
            } else {
                Self.transition(&job, .failed, "\(place) \(describe(outcome))", at: at, index: index)
            }
        } else {
            // The machine's fault (or the mesh's), not the job's: run it again, a bounded number of times.
            job.lostAttempts += 1
            if job.lostAttempts > Self.maxLostAttempts {
                Self.transition(&job, .failed, "\(place) \(describe(outcome)); given up after \(job.lostAttempts) attempts lost with their node", at: at, index: index)
            } else {
                Self.transition(&job, .pending, "\(place) \(describe(outcome)); requeued", at: at, index: index)
            }
        }
    }

    /// The mesh setting `quarantine_after` (default 3; 0: never).
    public var quarantineAfter: Int { setting(.quarantineAfter) ?? 3 }

    /// Whether `spec` is a canary for `node`, the one kind of job a quarantined node takes.
    static func isCanary(_ spec: JobSpec, for node: Node) -> Bool {
        node.quarantined && spec.canary && spec.node == node.id
    }

    /// Quarantine: attempts that could not start on a node (workspace, bundle, supervisor: the
    /// machine's fault) in a row cordon it; one that ran resets the count; a canary that
    /// succeeded re-admits it. A node cordoned by hand or draining is left as it is.
    private mutating func account(_ outcome: AttemptOutcome, on id: NodeID, canary: Bool, index: Consensus.Index) {
        guard var n = nodes[id] else { return }
        switch outcome {
        case .failedToStart(let why):
            n.failStreak += 1
            // Never the last node not quarantined: a fault that follows the jobs everywhere must
            // not empty the mesh. Nodes that left (mesh leave, idle shutdown) do not count; nodes
            // cordoned by hand do (they are expected back). Dead ones are gossip's business, which
            // the state machine cannot see: they count too.
            let others = nodes.values.contains { $0.id != id && !$0.quarantined && !$0.leaving }
            if quarantineAfter > 0, n.failStreak >= quarantineAfter, !n.cordoned, others {
                n.cordoned = true
                n.quarantined = true
                n.quarantinedIndex = index
                n.cordonReason = "quarantined: its last \(n.failStreak) attempts failed to start (last: \(why.prefix(300)))"
            }
        case .rejected:
            // The job's own fault (its code or working directory): says nothing of the machine.
            return
        case .exited, .signalled, .timedOut:
            n.failStreak = 0
            if canary, outcome.succeeded, n.quarantined {
                n.quarantined = false
                n.cordoned = false
                n.cordonReason = ""
            }
        case .cancelled, .lost:
            return
        }
        nodes[id] = n
    }

    /// Dependents of a job that ended: waiting ones start (all their dependencies succeeded) or
    /// fail (one did not).
    private mutating func settleDependents(of id: JobID, at: Int64, index: Consensus.Index) {
        guard let done = jobs[id], done.state.isTerminal else { return }
        for dependent in dependents[id] ?? [] {
            guard var job = jobs[dependent], job.state == .waiting else { continue }
            switch blockedState(job) {
            case nil: Self.transition(&job, .pending, "dependencies succeeded", at: at, index: index)
            case .failed?:
                Self.transition(&job, .failed, dependencyFailure(job), at: at, index: index)
                job.dependencyFailed = true
            default: continue
            }
            store(job)
            settleDependents(of: job.id, at: at, index: index)
        }
    }

    /// `.waiting` while a dependency is still to run, `.failed` if one did not succeed, nil if all did.
    func blockedState(_ job: Job) -> JobState? {
        var waiting = false
        for d in job.spec.after {
            guard let dep = jobs[d] else { return .failed }
            if dep.state == .failed || dep.state == .cancelled { return .failed }
            if dep.state != .succeeded { waiting = true }
        }
        return waiting ? .waiting : nil
    }

    func dependencyFailure(_ job: Job) -> String {
        let bad = job.spec.after.first { jobs[$0].map { $0.state == .failed || $0.state == .cancelled } ?? true }
        return "dependency \(bad.map(String.init) ?? "?") \(bad.flatMap { jobs[$0]?.state.rawValue } ?? "is missing")"
    }

    static func transition(_ job: inout Job, _ state: JobState, _ reason: String, at: Int64, index: Consensus.Index) {
        job.state = state
        job.dependencyFailed = false
        job.reason = reason
        job.history.append(JobEvent(state: state, reason: reason, at: at, index: index))
    }

    /// Applies `body` to each job (it sees a read-only copy of the state); returns the outcome and
    /// the ids it changed.
    private mutating func update(_ ids: [JobID], _ body: (inout Job, ClusterState) -> String?) -> (outcome: Outcome, changed: [JobID]) {
        var problems: [String] = []
        var changed: [JobID] = []
        for id in ids {
            guard var job = jobs[id] else {
                problems.append("no job \(id)")
                continue
            }
            let view = self
            if let problem = body(&job, view) {
                problems.append(problem)
            } else {
                store(job)
                changed.append(id)
            }
        }
        if changed.isEmpty && !problems.isEmpty { return (.rejected(problems.joined(separator: "; ")), []) }
        let message = "\(changed.count) job\(changed.count == 1 ? "" : "s") changed" + (problems.isEmpty ? "" : "; " + problems.joined(separator: "; "))
        return (.done(message), changed)
    }

    private func staleReport(_ id: JobID, _ attempt: Int, _ node: NodeID) -> String {
        guard let job = jobs[id] else { return "no job \(id)" }
        guard let current = job.current else { return "stale report: job \(id) has no attempt" }
        if current.number != attempt {
            return "stale report: attempt \(attempt) of job \(id) is not its current attempt (\(current.number))"
        }
        if current.node != node { return "stale report: attempt \(attempt) of job \(id) runs on \(name(current.node)), not \(name(node))" }
        return "stale report: job \(id) is \(job.state.rawValue)"
    }

    private func name(_ node: NodeID) -> String { nodes[node]?.name ?? "\(node)" }

    private func describe(_ o: AttemptOutcome) -> String {
        switch o {
        case .exited(let c): "exited \(c)"
        case .signalled(let s): "killed by signal \(s)"
        case .timedOut: "timed out"
        case .cancelled: "cancelled"
        case .lost(let why): "lost (\(why))"
        case .failedToStart(let why): "failed to start (\(why))"
        case .rejected(let why): "cannot run (\(why))"
        }
    }
}

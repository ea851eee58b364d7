import MeshCore

/// Jobs on the wire and in snapshots. Decoding checks what a peer (or a damaged file) could get
/// wrong and throws `WireError.malformed` with the reason.
extension Wire {
    // MARK: Encoding

    public static func wire(_ c: ClusterState.Capacity) -> WireNodeCapacity {
        var w = WireNodeCapacity()
        w.nodeClass = c.nodeClass
        w.labels = c.labels
        w.slots = UInt32(clamping: c.slots)
        w.cpus = UInt32(clamping: c.cpus)
        w.memoryMb = UInt64(clamping: c.memoryMB)
        w.gpus = UInt32(clamping: c.gpus)
        return w
    }

    public static func wire(_ s: JobSpec) -> WireJobSpec {
        var w = WireJobSpec()
        w.name = s.name
        w.command = s.command
        w.env = s.env
        w.resources = .with {
            $0.slots = UInt32(clamping: s.resources.slots)
            $0.cpus = UInt32(clamping: s.resources.cpus)
            $0.memoryMb = UInt64(clamping: s.resources.memoryMB)
            $0.gpus = UInt32(clamping: s.resources.gpus)
        }
        w.nodeClass = s.nodeClass
        w.labels = s.labels
        w.timeoutSeconds = s.timeoutSeconds
        w.retries = UInt32(clamping: s.retries)
        w.priority = Int32(clamping: s.priority)
        w.results = s.results
        w.after = s.after
        w.leaseSeconds = s.leaseSeconds
        w.held = s.held
        w.workdir = s.workdir
        w.sweep = s.sweep
        w.stage = s.stage
        w.parameters = s.parameters.map { p in .with { $0.name = p.name; $0.value = p.value } }
        w.identity = s.identity
        w.node = s.node?.rawValue ?? 0
        w.canary = s.canary
        w.keepWorkspace = s.keepWorkspace
        return w
    }

    public static func wire(_ b: BlobRef) -> WireBlobRef {
        var w = WireBlobRef()
        w.hash = b.hash
        w.size = b.size
        w.holders = b.holders.map(\.rawValue)
        return w
    }

    public static func wire(_ p: Provenance) -> WireProvenance {
        var w = WireProvenance()
        w.code = p.code.rawValue
        w.remote = p.remote
        w.commit = p.commit
        w.branch = p.branch
        w.diffSummary = p.diffSummary
        w.directory = p.directory
        if let b = p.bundle { w.bundle = wire(b) }
        w.submitter = p.submitter
        return w
    }

    public static func wire(_ o: AttemptOutcome) -> WireAttemptOutcome {
        var w = WireAttemptOutcome()
        switch o {
        case .exited(let c): w.kind = .exited(c)
        case .signalled(let s): w.kind = .signalled(s)
        case .timedOut: w.kind = .timedOut(true)
        case .cancelled: w.kind = .cancelled(true)
        case .lost(let why): w.kind = .lost(why)
        case .failedToStart(let why): w.kind = .failedToStart(why)
        case .rejected(let why): w.kind = .rejected(why)
        }
        return w
    }

    public static func wire(_ a: Attempt) -> WireAttempt {
        var w = WireAttempt()
        w.number = UInt32(clamping: a.number)
        w.node = a.node.rawValue
        w.term = a.term
        w.gpus = a.gpus.map { UInt32(clamping: $0) }
        w.assignedAt = a.assignedAt
        if let t = a.startedAt { w.startedAt = t }
        if let t = a.endedAt { w.endedAt = t }
        if let o = a.outcome { w.outcome = wire(o) }
        w.logHolders = a.logHolders.map(\.rawValue)
        w.logBytes = a.logBytes
        w.refused = a.refused
        return w
    }

    public static func wire(_ r: ResultFile) -> WireResultFile {
        var w = WireResultFile()
        w.path = r.path
        w.size = r.size
        w.sha256 = r.sha256
        return w
    }

    public static func wire(_ j: Job) -> WireJobRecord {
        var w = WireJobRecord()
        w.id = j.id
        w.spec = wire(j.spec)
        w.provenance = wire(j.provenance)
        w.submittedAt = j.submittedAt
        w.submittedVia = j.submittedVia.rawValue
        w.state = j.state.rawValue
        w.reason = j.reason
        w.history = j.history.map { e in
            var h = WireJobEvent()
            h.state = e.state.rawValue
            h.reason = e.reason
            h.at = e.at
            h.index = e.index
            return h
        }
        w.attempts = j.attempts.map(wire)
        w.results = j.results.map(wire)
        if let b = j.resultsBundle { w.resultsBundle = wire(b) }
        w.cancelRequested = j.cancelRequested
        w.lostAttempts = UInt32(clamping: j.lostAttempts)
        w.failedAttempts = UInt32(clamping: j.failedAttempts)
        w.dependencyFailed = j.dependencyFailed
        w.requeueRequested = j.requeueRequested
        return w
    }

    public static func wire(_ a: ClusterState.Assignment) -> WireAssignment {
        var w = WireAssignment()
        w.job = a.job
        w.attempt = UInt32(clamping: a.attempt)
        w.node = a.node.rawValue
        w.gpus = a.gpus.map { UInt32(clamping: $0) }
        w.term = a.term
        w.at = a.at
        return w
    }

    public static func wire(_ r: ClusterState.Report) -> WireAttemptReport {
        var w = WireAttemptReport()
        w.job = r.job
        w.attempt = UInt32(clamping: r.attempt)
        w.node = r.node.rawValue
        w.outcome = wire(r.outcome)
        w.results = r.results.map(wire)
        if let b = r.resultsBundle { w.resultsBundle = wire(b) }
        w.logBytes = r.logBytes
        w.at = r.at
        w.refused = r.refused
        return w
    }

    static func jobsChange(_ ids: [JobID], reason: String = "", at: Int64) -> WireJobsChange {
        var w = WireJobsChange()
        w.jobs = ids
        w.reason = reason
        w.at = at
        return w
    }

    // MARK: Decoding

    static let maxCommandArguments = 10_000
    static let maxText = 64 * 1024

    public static func capacity(_ w: WireNodeCapacity) -> ClusterState.Capacity {
        ClusterState.Capacity(nodeClass: w.nodeClass, labels: w.labels, slots: Int(w.slots), cpus: Int(w.cpus),
                              memoryMB: Int(clamping: w.memoryMb), gpus: Int(w.gpus))
    }

    public static func spec(_ w: WireJobSpec) throws(WireError) -> JobSpec {
        guard w.command.count <= maxCommandArguments, w.command.allSatisfy({ $0.utf8.count <= maxText }) else {
            throw .malformed("job command too long")
        }
        guard w.env.count <= 1000, w.results.count <= 1000, w.after.count <= 10_000, w.parameters.count <= 1000 else { throw .malformed("job spec too large") }
        var spec = JobSpec(
            name: w.name, command: w.command, env: w.env,
            resources: Resources(slots: Int(w.resources.slots), cpus: Int(w.resources.cpus),
                                 memoryMB: Int(clamping: w.resources.memoryMb), gpus: Int(w.resources.gpus)),
            nodeClass: w.nodeClass, labels: w.labels, timeoutSeconds: w.timeoutSeconds, retries: Int(w.retries),
            priority: Int(w.priority), results: w.results, after: w.after, leaseSeconds: w.leaseSeconds, held: w.held,
            workdir: w.workdir, sweep: w.sweep, stage: w.stage, parameters: w.parameters.map { Parameter($0.name, $0.value) },
            identity: w.identity, node: w.node == 0 ? nil : NodeID(w.node), canary: w.canary)
        spec.keepWorkspace = w.keepWorkspace
        return spec
    }

    public static func blob(_ w: WireBlobRef) -> BlobRef {
        BlobRef(hash: w.hash, size: w.size, holders: w.holders.map(NodeID.init))
    }

    public static func provenance(_ w: WireProvenance) throws(WireError) -> Provenance {
        guard let code = Provenance.Code(rawValue: w.code.isEmpty ? "none" : w.code) else { throw .malformed("unknown code kind '\(w.code)'") }
        return Provenance(code: code, remote: w.remote, commit: w.commit, branch: w.branch, diffSummary: w.diffSummary,
                          directory: w.directory, bundle: w.hasBundle ? blob(w.bundle) : nil, submitter: w.submitter)
    }

    public static func outcome(_ w: WireAttemptOutcome) throws(WireError) -> AttemptOutcome {
        switch w.kind {
        case .exited(let c)?: return .exited(c)
        case .signalled(let s)?: return .signalled(s)
        case .timedOut?: return .timedOut
        case .cancelled?: return .cancelled
        case .lost(let why)?: return .lost(why)
        case .failedToStart(let why)?: return .failedToStart(why)
        case .rejected(let why)?: return .rejected(why)
        case nil: throw .malformed("attempt outcome without a kind")
        }
    }

    public static func attempt(_ w: WireAttempt) throws(WireError) -> Attempt {
        var a = Attempt(number: Int(w.number), node: NodeID(w.node), term: w.term, gpus: w.gpus.map(Int.init), assignedAt: w.assignedAt)
        a.startedAt = w.hasStartedAt ? w.startedAt : nil
        a.endedAt = w.hasEndedAt ? w.endedAt : nil
        a.outcome = w.hasOutcome ? try outcome(w.outcome) : nil
        a.logHolders = w.logHolders.map(NodeID.init)
        a.logBytes = w.logBytes
        a.refused = w.refused
        return a
    }

    public static func resultFile(_ w: WireResultFile) -> ResultFile { ResultFile(path: w.path, size: w.size, sha256: w.sha256) }

    public static func job(_ w: WireJobRecord) throws(WireError) -> Job {
        guard let state = JobState(rawValue: w.state) else { throw .malformed("job \(w.id) in unknown state '\(w.state)'") }
        var history: [JobEvent] = []
        for h in w.history {
            guard let s = JobState(rawValue: h.state) else { throw .malformed("job \(w.id) history in unknown state") }
            history.append(JobEvent(state: s, reason: h.reason, at: h.at, index: h.index))
        }
        var attempts: [Attempt] = []
        for a in w.attempts { attempts.append(try attempt(a)) }
        var job = Job(
            id: w.id, spec: try spec(w.spec), provenance: try provenance(w.provenance), submittedAt: w.submittedAt,
            submittedVia: NodeID(w.submittedVia), state: state, reason: w.reason, history: history, attempts: attempts,
            results: w.results.map(resultFile), resultsBundle: w.hasResultsBundle ? blob(w.resultsBundle) : nil,
            cancelRequested: w.cancelRequested, lostAttempts: Int(w.lostAttempts), failedAttempts: Int(w.failedAttempts))
        job.dependencyFailed = w.dependencyFailed
        job.requeueRequested = w.requeueRequested
        return job
    }

    public static func assignment(_ w: WireAssignment) -> ClusterState.Assignment {
        ClusterState.Assignment(job: w.job, attempt: Int(w.attempt), node: NodeID(w.node), gpus: w.gpus.map(Int.init), term: w.term, at: w.at)
    }

    public static func report(_ w: WireAttemptReport) throws(WireError) -> ClusterState.Report {
        guard w.results.count <= MeshCore.Limits.maxResultFiles, w.refused.count <= MeshCore.Limits.maxRefused + 1 else {
            throw .malformed("a report of \(w.results.count) result files")
        }
        return ClusterState.Report(job: w.job, attempt: Int(w.attempt), node: NodeID(w.node), outcome: try outcome(w.outcome),
                                   results: w.results.map(resultFile), resultsBundle: w.hasResultsBundle ? blob(w.resultsBundle) : nil,
                                   logBytes: w.logBytes, at: w.at, refused: w.refused)
    }
}

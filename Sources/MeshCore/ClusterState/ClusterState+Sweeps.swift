extension ClusterState {
    /// The largest plan the mesh accepts unless `max_plan_jobs` says otherwise.
    public static let defaultMaxPlanJobs = 10_000
    /// A staging sweep whose client sent nothing for this many entries is abandoned.
    public static let sweepStagingRetention: Consensus.Index = 50_000

    public var maxPlanJobs: Int { setting(.maxPlanJobs) ?? Self.defaultMaxPlanJobs }

    /// Sweeps by id, in order.
    public var sweepList: [Sweep] { sweeps.values.sorted { $0.id < $1.id } }

    mutating func plan(_ chunk: PlanChunk, index: Consensus.Index) -> Outcome {
        var sweep: Sweep
        if chunk.sweep == 0 {
            guard chunk.total > 0 else { return .rejected("the plan makes no jobs") }
            guard chunk.total <= maxPlanJobs else {
                return .rejected("the plan makes \(chunk.total) jobs, more than this mesh's limit of \(maxPlanJobs): cut an axis, or raise the limit with `mesh set max_plan_jobs \(chunk.total)`")
            }
            guard nextSweepID < Limits.maxID else { return .rejected("the mesh has used up its sweep numbers") }
            sweep = Sweep(id: nextSweepID, name: chunk.name, submitter: chunk.provenance.submitter, createdAt: chunk.at, axes: chunk.axes,
                          stages: chunk.stages, total: chunk.total, reuse: chunk.reuse, status: .staging, provenance: chunk.provenance,
                          via: chunk.via)
            nextSweepID += 1
        } else {
            guard let s = sweeps[chunk.sweep] else { return .rejected("no sweep \(Sweep.label(chunk.sweep))") }
            guard s.status == .staging else { return .rejected("sweep \(Sweep.label(s.id)) is \(s.status.rawValue), not staging") }
            sweep = s
        }
        let label = Sweep.label(sweep.id)
        guard sweep.staged.count + chunk.jobs.count <= sweep.total else {
            return .rejected("sweep \(label) announced \(sweep.total) jobs and was sent more")
        }
        sweep.staged += chunk.jobs
        sweep.touchedAt = index
        guard chunk.final else {
            sweeps[sweep.id] = sweep
            return .created([sweep.id], "sweep \(label) staging: \(sweep.staged.count) of \(sweep.total)")
        }
        if let problem = check(sweep) ?? (chunk.resume ? nothingToResume(sweep) : nil) {
            sweep.status = .abandoned
            sweep.reason = problem
            sweep.staged = []
            sweeps[sweep.id] = sweep
            return .rejected("sweep \(label) refused, nothing submitted: \(problem)")
        }
        guard nextJobID < Limits.maxID - UInt64(sweep.staged.count) else { return .rejected("the mesh has used up its job numbers") }
        materialize(&sweep, at: chunk.at == 0 ? sweep.createdAt : chunk.at, index: index)
        sweeps[sweep.id] = sweep
        return .created([sweep.id], "sweep \(label): \(sweep.cells.count) cells, \(sweep.created) new jobs, \(sweep.jobIDs.count - sweep.created) reused")
    }

    /// Why the staged plan cannot be submitted, or nil.
    private func check(_ sweep: Sweep) -> String? {
        guard sweep.staged.count == sweep.total else { return "announced \(sweep.total) jobs, sent \(sweep.staged.count)" }
        var seen: Set<String> = []
        var possible: [Resources: [String: String?]] = [:]
        for p in sweep.staged {
            if let problem = Self.invalid(p.spec) { return "\(p.spec.name): \(problem)" }
            guard !p.identity.isEmpty else { return "\(p.spec.name) has no identity" }
            for d in p.dependsOn where !seen.contains(d) { return "\(p.spec.name) depends on a job that is not earlier in the plan" }
            for d in p.spec.after where jobs[d] == nil { return "--after \(d): no such job" }
            seen.insert(p.identity)
            let placement = p.spec.nodeClass + "\u{1}" + p.spec.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "\u{1}")
            let why: String?
            if let known = possible[p.spec.resources]?[placement] {
                why = known
            } else {
                why = impossible(p.spec)
                possible[p.spec.resources, default: [:]][placement] = .some(why)
            }
            if let why { return "\(p.spec.name) cannot run: \(why)" }
        }
        return nil
    }

    /// `--resume` of a plan none of whose jobs exists: its code, values or resources changed since
    /// (or it was never submitted), so resuming would run all of it.
    private func nothingToResume(_ sweep: Sweep) -> String? {
        guard sweep.reuse, !sweep.staged.contains(where: { identities[$0.identity] != nil }) else { return nil }
        return "none of its \(sweep.total) jobs has been submitted before: the plan's code, values or resources changed since, or it never ran; submit it without --resume to run it all"
    }

    /// Creates the staged jobs (or reuses identical ones) and records the cells.
    private mutating func materialize(_ sweep: inout Sweep, at: Int64, index: Consensus.Index) {
        var local: [String: JobID] = [:]
        // The uncommitted diff (up to 256 KiB) is kept once, on the sweep, not on each of its jobs.
        var provenance = sweep.provenance
        provenance.diffSummary = ""
        for p in sweep.staged {
            let stage = p.spec.stage
            if let id = local[p.identity] {
                sweep.cells.append(SweepCell(job: id, stage: stage, combination: p.combination, labels: p.labels, reused: true))
                continue
            }
            if sweep.reuse, let id = identities[p.identity], var job = jobs[id] {
                if job.state == .failed || job.state == .cancelled {
                    if revive(&job, "resumed by sweep \(Sweep.label(sweep.id))", at: at, index: index) == nil {
                        store(job)
                        reviveDependents(of: id, at: at, index: index)
                    }
                }
                local[p.identity] = id
                sweep.cells.append(SweepCell(job: id, stage: stage, combination: p.combination, labels: p.labels, reused: true))
                continue
            }
            var spec = p.spec
            spec.after = p.spec.after + p.dependsOn.map { local[$0]! }
            spec.sweep = sweep.id
            spec.identity = p.identity
            let id = create(spec, provenance, at: at, via: sweep.via, index: index)
            local[p.identity] = id
            sweep.created += 1
            sweep.cells.append(SweepCell(job: id, stage: stage, combination: p.combination, labels: p.labels, reused: false))
        }
        sweep.staged = []
        sweep.status = .submitted
    }

    mutating func abandonIdleSweeps(at index: Consensus.Index) {
        for s in sweeps.values where s.status == .staging && index > s.touchedAt && index - s.touchedAt > Self.sweepStagingRetention {
            var s = s
            s.status = .abandoned
            s.reason = "its client sent no more of it"
            s.staged = []
            sweeps[s.id] = s
        }
    }
}

/// What a request may hold, checked before it is proposed and again when its entry is applied
/// (DESIGN.md §5, totality): an entry that fails the check is recorded as refused and changes
/// nothing, so an entry written by a buggy or hostile client, or by an older release that
/// checked less, cannot stop a coordinator that applies it.
extension ClusterState {
    /// Why `command` can never be applied, whatever the state; nil if its values are in bounds.
    public static func problem(_ command: Command) -> String? {
        switch command {
        case .register(let id, let name, let address, let capacity):
            guard id.rawValue != 0, !name.isEmpty else { return "a node needs an id and a name" }
            return text(name, "a node's name", 256) ?? text(address, "a node's address", 1024) ?? capacityProblem(capacity)
        case .unregister:
            return nil
        case .cordon(let name, let reason):
            return text(name, "a node's name", 256) ?? text(reason, "a reason")
        case .uncordon(let name):
            return text(name, "a node's name", 256)
        case .drain(let name, let deadline, _):
            guard (0...Limits.maxDrainDeadlineMillis).contains(deadline) else {
                return "a drain's deadline is from 0 to \(Limits.maxDrainDeadlineMillis / 86_400_000) days, not \(deadline) ms"
            }
            return text(name, "a node's name", 256)
        case .requeue(let ids, let reason, _), .cancel(let ids, let reason, _):
            return jobList(ids) ?? text(reason, "a reason")
        case .retry(let ids, _), .hold(let ids, _), .release(let ids, _):
            return jobList(ids)
        case .setSetting(let key, let value):
            return text(key, "a setting's name", 256) ?? text(value, "a setting's value", 4096)
        case .submit(let spec, let provenance, _, _):
            return invalid(spec) ?? provenanceProblem(provenance)
        case .assign(let assignments):
            guard assignments.count <= Limits.maxAssignments else { return "\(assignments.count) assignments in one entry" }
            for a in assignments {
                guard a.attempt >= 1, a.gpus.count <= Limits.maxGPUs, a.gpus.allSatisfy({ (0..<Limits.maxGPUs).contains($0) }) else {
                    return "assignment of job \(a.job): attempt \(a.attempt), \(a.gpus.count) GPUs out of bounds"
                }
            }
            return nil
        case .started(_, let attempt, _, _):
            return attempt >= 1 ? nil : "attempt \(attempt) does not exist"
        case .finished(let r):
            return reportProblem(r)
        case .lost(_, let attempt, let reason, _):
            return attempt >= 1 ? text(reason, "a reason") : "attempt \(attempt) does not exist"
        case .stored(_, let attempt, _):
            return attempt >= 1 ? nil : "attempt \(attempt) does not exist"
        case .plan(let chunk):
            return planProblem(chunk)
        }
    }

    /// What is wrong with a spec whatever the mesh looks like, or nil.
    static func invalid(_ spec: JobSpec) -> String? {
        guard !spec.command.isEmpty, !spec.command[0].isEmpty else { return "no command to run" }
        guard spec.command.count <= Limits.maxArguments else { return "a command of \(spec.command.count) arguments (at most \(Limits.maxArguments))" }
        if let p = spec.command.lazy.compactMap({ text($0, "an argument") }).first { return p }
        let r = spec.resources
        guard (1...Limits.maxJobSlots).contains(r.slots) else { return "a job takes 1 to \(Limits.maxJobSlots) slots, not \(r.slots)" }
        guard (0...Limits.maxGPUs).contains(r.gpus) else { return "a job takes 0 to \(Limits.maxGPUs) GPUs, not \(r.gpus)" }
        guard (0...Limits.maxCPUs).contains(r.cpus) else { return "a job asks for 0 to \(Limits.maxCPUs) CPUs, not \(r.cpus)" }
        guard (0...Limits.maxMemoryMB).contains(r.memoryMB) else { return "a job asks for 0 to \(Limits.maxMemoryMB) MiB of memory, not \(r.memoryMB)" }
        guard (0...Limits.maxRetries).contains(spec.retries) else { return "retries are 0 to \(Limits.maxRetries), not \(spec.retries)" }
        guard (Int(Int32.min)...Int(Int32.max)).contains(spec.priority) else { return "a priority is a 32-bit number, not \(spec.priority)" }
        guard spec.leaseSeconds <= Limits.maxLeaseSeconds else {
            return "a lease is at most \(Limits.maxLeaseSeconds / 86_400) days (\(Limits.maxLeaseSeconds) s), not \(spec.leaseSeconds) s"
        }
        guard spec.timeoutSeconds <= Limits.maxTimeoutSeconds else {
            return "a timeout is at most \(Limits.maxTimeoutSeconds / 86_400) days (\(Limits.maxTimeoutSeconds) s), not \(spec.timeoutSeconds) s"
        }
        // (Node 0 means "any node" on the wire: a spec pinned to it would change when a snapshot
        // of a staging sweep is read back. Found by the apply fuzzer.)
        if spec.node?.rawValue == 0 { return "a job pinned to node 0, which is no node" }
        guard spec.env.count <= Limits.maxEnvironment, spec.labels.count <= Limits.maxLabels, spec.results.count <= Limits.maxResultPatterns,
              spec.after.count <= Limits.maxDependencies, spec.parameters.count <= Limits.maxParameters else {
            return "too many environment variables, labels, result patterns, dependencies or values (at most \(Limits.maxEnvironment), \(Limits.maxLabels), \(Limits.maxResultPatterns), \(Limits.maxDependencies), \(Limits.maxParameters))"
        }
        for (k, v) in spec.env { if let p = text(k, "an environment variable's name") ?? text(v, "an environment value") { return p } }
        for (k, v) in spec.labels { if let p = text(k, "a label", 256) ?? text(v, "a label's value", 1024) { return p } }
        for g in spec.results { if let p = text(g, "a results pattern", Limits.maxPath) { return p } }
        for p in spec.parameters { if let t = text(p.name, "a value's name", 256) ?? text(p.value, "a value") { return t } }
        return text(spec.name, "a job's name", 4096) ?? text(spec.nodeClass, "a class", 256) ?? text(spec.workdir, "a working directory", Limits.maxPath)
            ?? text(spec.stage, "a stage", 256) ?? text(spec.identity, "an identity", 256)
    }

    static func provenanceProblem(_ p: Provenance) -> String? {
        for (t, what) in [(p.remote, "a remote"), (p.commit, "a commit"), (p.branch, "a branch"), (p.directory, "a directory"), (p.submitter, "a submitter")] {
            if let problem = text(t, what, 4096) { return problem }
        }
        return text(p.diffSummary, "the uncommitted diff", Limits.maxDiff) ?? p.bundle.flatMap(blobProblem)
    }

    static func blobProblem(_ b: BlobRef) -> String? {
        guard b.hash.utf8.count <= 128, b.holders.count <= Limits.maxHolders else { return "a blob reference out of bounds" }
        return nil
    }

    static func capacityProblem(_ c: Capacity) -> String? {
        guard (0...Limits.maxNodeSlots).contains(c.slots), (0...Limits.maxCPUs).contains(c.cpus), (0...Limits.maxMemoryMB).contains(c.memoryMB),
              (0...Limits.maxGPUs).contains(c.gpus), c.labels.count <= Limits.maxLabels else {
            return "a node's capacity is out of bounds (slots 0–\(Limits.maxNodeSlots), CPUs 0–\(Limits.maxCPUs), GPUs 0–\(Limits.maxGPUs), at most \(Limits.maxLabels) labels)"
        }
        for (k, v) in c.labels { if let p = text(k, "a label", 256) ?? text(v, "a label's value", 1024) { return p } }
        return text(c.nodeClass, "a class", 256)
    }

    static func reportProblem(_ r: Report) -> String? {
        guard r.attempt >= 1 else { return "attempt \(r.attempt) does not exist" }
        guard r.results.count <= Limits.maxResultFiles else { return "a report of \(r.results.count) result files (at most \(Limits.maxResultFiles))" }
        var bytes = 0
        for f in r.results {
            guard f.path.utf8.count <= Limits.maxPath, f.sha256.utf8.count <= 128 else { return "a result's path or hash is too long" }
            bytes += f.path.utf8.count + f.sha256.utf8.count + 16
        }
        guard bytes <= Limits.maxManifestBytes else { return "a results manifest of \(bytes) bytes (at most \(Limits.maxManifestBytes))" }
        guard r.refused.count <= Limits.maxRefused + 1, r.refused.allSatisfy({ $0.utf8.count <= Limits.maxPath + 256 }) else {
            return "too many refused results listed"
        }
        switch r.outcome {
        case .lost(let why), .failedToStart(let why), .rejected(let why):
            if let p = text(why, "a reason") { return p }
        case .exited, .signalled, .timedOut, .cancelled:
            break
        }
        return r.resultsBundle.flatMap(blobProblem)
    }

    static func planProblem(_ chunk: PlanChunk) -> String? {
        guard (0...Limits.maxPlanJobs).contains(chunk.total) else { return "a plan of \(chunk.total) jobs (at most \(Limits.maxPlanJobs))" }
        guard chunk.jobs.count <= Limits.maxPlanJobs, chunk.axes.count <= Limits.maxPlanNames, chunk.stages.count <= Limits.maxPlanNames else {
            return "a plan chunk out of bounds"
        }
        if let p = text(chunk.name, "a plan's name", 4096) ?? provenanceProblem(chunk.provenance) { return p }
        for n in chunk.axes + chunk.stages { if let p = text(n, "an axis or stage", 256) { return p } }
        for j in chunk.jobs {
            guard j.dependsOn.count <= Limits.maxDependencies, j.labels.count <= Limits.maxPlanNames,
                  (0...Limits.maxPlanJobs).contains(j.combination) else { return "\(j.spec.name): a planned job out of bounds" }
            if let p = invalid(j.spec) ?? text(j.identity, "an identity", 256) { return "\(j.spec.name.prefix(100)): \(p)" }
            for l in j.labels { if let p = text(l, "a value", 4096) { return p } }
        }
        return nil
    }

    private static func jobList(_ ids: [JobID]) -> String? {
        ids.count <= Limits.maxJobsPerChange ? nil : "\(ids.count) jobs in one request (at most \(Limits.maxJobsPerChange))"
    }

    private static func text(_ s: String, _ what: String, _ limit: Int = Limits.maxText) -> String? {
        Limits.fits(s, limit) ? nil : "\(what) of \(s.utf8.count) bytes (at most \(limit))"
    }
}

extension ClusterState.Capacity {
    /// Within the bounds the state machine accepts (gossip metadata from a node is clamped, not
    /// refused: a node that offers an absurd count still registers, with the bound).
    public var clamped: ClusterState.Capacity {
        var c = self
        c.slots = Swift.min(Swift.max(c.slots, 0), Limits.maxNodeSlots)
        c.cpus = Swift.min(Swift.max(c.cpus, 0), Limits.maxCPUs)
        c.memoryMB = Swift.min(Swift.max(c.memoryMB, 0), Limits.maxMemoryMB)
        c.gpus = Swift.min(Swift.max(c.gpus, 0), Limits.maxGPUs)
        if c.labels.count > Limits.maxLabels {
            c.labels = Dictionary(uniqueKeysWithValues: c.labels.sorted { $0.key < $1.key }.prefix(Limits.maxLabels).map { ($0.key, $0.value) })
        }
        return c
    }
}

extension ClusterState {
    /// What should always hold of a state, whatever was applied to it (the property tests and the
    /// fuzzers check it after every entry); empty when all is well.
    public func invariantViolations() -> [String] {
        var out: [String] = []
        for (id, job) in jobs {
            if id != job.id { out.append("job stored under \(id) is \(job.id)") }
            if id >= nextJobID { out.append("job \(id) at or above nextJobID \(nextJobID)") }
            if activeIDs.contains(id) != job.state.isActive { out.append("job \(id) \(job.state) and its active index disagree") }
            if pendingIDs.contains(id) != (job.state == .pending) { out.append("job \(id) \(job.state) and its pending index disagree") }
            if waitingIDs.contains(id) != (job.state == .waiting) { out.append("job \(id) \(job.state) and its waiting index disagree") }
            for (i, a) in job.attempts.enumerated() where a.number != i + 1 { out.append("job \(id): attempt \(i + 1) is numbered \(a.number)") }
            if job.state.isActive, job.current == nil || job.current?.outcome != nil { out.append("job \(id) is \(job.state) without an attempt under way") }
            if let p = Self.invalid(job.spec) { out.append("job \(id) holds an invalid spec: \(p)") }
            if job.history.isEmpty { out.append("job \(id) has no history") }
        }
        var counts: [JobState: Int] = [:]
        for job in jobs.values { counts[job.state, default: 0] += 1 }
        if counts != stateCounts { out.append("state counts \(stateCounts) disagree with the jobs' \(counts)") }
        for id in activeIDs.union(pendingIDs).union(waitingIDs) where jobs[id] == nil { out.append("index names job \(id), which does not exist") }
        for (id, s) in sweeps {
            if id != s.id || id >= nextSweepID { out.append("sweep \(id) out of place (\(s.id), next \(nextSweepID))") }
            for c in s.cells where jobs[c.job] == nil { out.append("sweep \(id) names job \(c.job), which does not exist") }
        }
        for (id, n) in nodes {
            if id != n.id { out.append("node stored under \(id) is \(n.id)") }
            if n.quarantined && !n.cordoned { out.append("node \(n.name) quarantined but not cordoned") }
            if n.draining && !n.cordoned { out.append("node \(n.name) draining but not cordoned") }
        }
        for (key, value) in settings {
            if let p = Self.settingProblem(key: key, value: value) { out.append("setting \(key) holds a refused value: \(p)") }
        }
        return out
    }
}

import MeshCore

/// Sweeps and plan chunks on the wire and in snapshots.
extension Wire {
    static let maxPlanChunkJobs = 100_000

    public static func wire(_ p: PlannedJob) -> WirePlannedJob {
        var w = WirePlannedJob()
        w.spec = wire(p.spec)
        w.identity = p.identity
        w.dependsOn = p.dependsOn
        w.combination = UInt32(clamping: p.combination)
        w.labels = p.labels
        return w
    }

    public static func wire(_ c: PlanChunk) -> WirePlanChunk {
        var w = WirePlanChunk()
        w.sweep = c.sweep
        w.name = c.name
        w.axes = c.axes
        w.stages = c.stages
        w.total = UInt32(clamping: c.total)
        w.reuse = c.reuse
        w.provenance = wire(c.provenance)
        w.at = c.at
        w.via = c.via.rawValue
        w.jobs = c.jobs.map(wire)
        w.final = c.final
        w.resume = c.resume
        return w
    }

    /// A sweep; `summary` leaves out its cells and counts their states instead (from `jobs`).
    public static func wire(_ s: Sweep, summary: Bool = false, jobs: [JobID: Job] = [:]) -> WireSweepRecord {
        var w = WireSweepRecord()
        w.id = s.id
        w.name = s.name
        w.submitter = s.submitter
        w.createdAt = s.createdAt
        w.axes = s.axes
        w.stages = s.stages
        w.total = UInt32(clamping: s.total)
        w.reuse = s.reuse
        w.status = s.status.rawValue
        w.reason = s.reason
        w.created = UInt32(clamping: s.created)
        w.via = s.via.rawValue
        w.touchedAt = s.touchedAt
        if summary {
            var provenance = s.provenance
            provenance.diffSummary = provenance.diffSummary.isEmpty ? "" : "(left out)"
            w.provenance = wire(provenance)
            for c in s.cells { w.states[jobs[c.job]?.state.rawValue ?? "missing", default: 0] += 1 }
        } else {
            w.provenance = wire(s.provenance)
            w.cells = s.cells.map { c in
                var wc = WireSweepCell()
                wc.job = c.job
                wc.stage = c.stage
                wc.combination = UInt32(clamping: c.combination)
                wc.labels = c.labels
                wc.reused = c.reused
                return wc
            }
            w.staged = s.staged.map(wire)
        }
        return w
    }

    public static func plannedJob(_ w: WirePlannedJob) throws(WireError) -> PlannedJob {
        guard w.dependsOn.count <= 10_000, w.labels.count <= 1000 else { throw .malformed("planned job too large") }
        return PlannedJob(spec: try spec(w.spec), identity: w.identity, dependsOn: w.dependsOn, combination: Int(w.combination), labels: w.labels)
    }

    public static func planChunk(_ w: WirePlanChunk) throws(WireError) -> PlanChunk {
        guard w.jobs.count <= maxPlanChunkJobs else { throw .malformed("plan chunk of \(w.jobs.count) jobs") }
        var jobs: [PlannedJob] = []
        jobs.reserveCapacity(w.jobs.count)
        for j in w.jobs { jobs.append(try plannedJob(j)) }
        return PlanChunk(sweep: w.sweep, name: w.name, axes: w.axes, stages: w.stages, total: Int(w.total), reuse: w.reuse,
                         provenance: try provenance(w.provenance), at: w.at, via: NodeID(w.via), jobs: jobs, final: w.final, resume: w.resume)
    }

    public static func sweep(_ w: WireSweepRecord) throws(WireError) -> Sweep {
        guard let status = Sweep.Status(rawValue: w.status) else { throw .malformed("sweep \(w.id) in unknown status '\(w.status)'") }
        var staged: [PlannedJob] = []
        for p in w.staged { staged.append(try plannedJob(p)) }
        return Sweep(
            id: w.id, name: w.name, submitter: w.submitter, createdAt: w.createdAt, axes: w.axes, stages: w.stages, total: Int(w.total),
            reuse: w.reuse, status: status, reason: w.reason,
            cells: w.cells.map { SweepCell(job: $0.job, stage: $0.stage, combination: Int($0.combination), labels: $0.labels, reused: $0.reused) },
            created: Int(w.created), staged: staged, provenance: try provenance(w.provenance), via: NodeID(w.via), touchedAt: w.touchedAt)
    }
}

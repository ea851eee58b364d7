/// Sweeps (DESIGN.md §7): many jobs submitted together, from a plan or a `--matrix`. The client
/// expands the plan; the log carries the jobs in chunks, and the last chunk creates them all at
/// once (so a plan is submitted whole or not at all), deduplicating by identity.
public typealias SweepID = UInt64

/// One named value a job was made with (`lr=0.1`); it reaches the job as `{lr}` and as MESH_PARAM_LR.
public struct Parameter: Sendable, Hashable {
    public var name: String
    public var value: String

    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// One job of a plan, as the client expanded it.
public struct PlannedJob: Sendable, Equatable {
    /// Its spec; `after` is filled in from `dependsOn` when the job is created.
    public var spec: JobSpec
    /// The hash of its resolved command, parameters, resources, code and dependencies.
    public var identity: String
    /// Identities of jobs earlier in the same plan that must succeed first.
    public var dependsOn: [String]
    /// Which combination of the sweep's axes it belongs to (a row of the grid).
    public var combination: Int
    /// The axis values of that combination, for people.
    public var labels: [String]

    public init(spec: JobSpec, identity: String, dependsOn: [String] = [], combination: Int = 0, labels: [String] = []) {
        self.spec = spec
        self.identity = identity
        self.dependsOn = dependsOn
        self.combination = combination
        self.labels = labels
    }

    /// Roughly its size on the wire (chunks are cut by it).
    public var approximateSize: Int { 64 + identity.utf8.count * (1 + dependsOn.count) + labels.reduce(0) { $0 + 4 + $1.utf8.count } + spec.approximateSize }
}

/// Part of a plan on its way into the log.
public struct PlanChunk: Sendable, Equatable {
    /// 0 on the first chunk, which opens the sweep; later chunks name the sweep it opened.
    public var sweep: SweepID
    /// The plan file, or the matrix command.
    public var name: String
    public var axes: [String]
    public var stages: [String]
    /// Cells the whole plan has (checked against `max_plan_jobs` on the first chunk).
    public var total: Int
    /// Reuse jobs of earlier sweeps with the same identity (re-submitting a plan runs only the
    /// cells that have not succeeded); false: run every cell afresh.
    public var reuse: Bool
    public var provenance: Provenance
    public var at: Int64
    public var via: NodeID
    public var jobs: [PlannedJob]
    /// The last chunk: create the jobs.
    public var final: Bool
    /// `--resume`: refuse the plan (on the last chunk) if none of its jobs exists yet, rather than
    /// quietly running all of it.
    public var resume: Bool

    public init(sweep: SweepID = 0, name: String = "", axes: [String] = [], stages: [String] = [], total: Int = 0, reuse: Bool = true,
                provenance: Provenance = Provenance(), at: Int64 = 0, via: NodeID = NodeID(0), jobs: [PlannedJob] = [], final: Bool = false,
                resume: Bool = false) {
        self.sweep = sweep
        self.name = name
        self.axes = axes
        self.stages = stages
        self.total = total
        self.reuse = reuse
        self.provenance = provenance
        self.at = at
        self.via = via
        self.jobs = jobs
        self.final = final
        self.resume = resume
    }
}

/// A cell of a sweep's grid: one combination in one stage, and the job that runs it (shared with
/// other cells, or other sweeps, when their jobs are identical).
public struct SweepCell: Sendable, Equatable {
    public var job: JobID
    public var stage: String
    public var combination: Int
    public var labels: [String]
    /// The job existed before this sweep (an identical cell of an earlier one).
    public var reused: Bool

    public init(job: JobID, stage: String, combination: Int, labels: [String], reused: Bool) {
        self.job = job
        self.stage = stage
        self.combination = combination
        self.labels = labels
        self.reused = reused
    }
}

public struct Sweep: Sendable, Equatable {
    public enum Status: String, Sendable {
        /// Chunks are arriving.
        case staging
        /// Its jobs exist.
        case submitted
        /// Its client went away before the last chunk (or the plan was refused): no jobs.
        case abandoned
    }

    public var id: SweepID
    public var name: String
    public var submitter: String
    public var createdAt: Int64
    public var axes: [String]
    public var stages: [String]
    public var total: Int
    public var reuse: Bool
    public var status: Status
    public var reason: String
    public var cells: [SweepCell]
    /// Jobs created by this sweep (the rest of its cells reuse earlier jobs or each other's).
    public var created: Int
    /// What arrived while staging (empty once submitted).
    public var staged: [PlannedJob]
    public var provenance: Provenance
    public var via: NodeID
    /// The index of the last chunk (staging sweeps idle too long are abandoned).
    public var touchedAt: UInt64

    public init(id: SweepID, name: String, submitter: String, createdAt: Int64, axes: [String], stages: [String], total: Int,
                reuse: Bool, status: Status, reason: String = "", cells: [SweepCell] = [], created: Int = 0, staged: [PlannedJob] = [],
                provenance: Provenance = Provenance(), via: NodeID = NodeID(0), touchedAt: UInt64 = 0) {
        self.id = id
        self.name = name
        self.submitter = submitter
        self.createdAt = createdAt
        self.axes = axes
        self.stages = stages
        self.total = total
        self.reuse = reuse
        self.status = status
        self.reason = reason
        self.cells = cells
        self.created = created
        self.staged = staged
        self.provenance = provenance
        self.via = via
        self.touchedAt = touchedAt
    }

    /// Its jobs, each once, in cell order.
    public var jobIDs: [JobID] {
        var seen: Set<JobID> = []
        return cells.compactMap { seen.insert($0.job).inserted ? $0.job : nil }
    }

    /// How sweeps are written on the command line: `s12`.
    public static func label(_ id: SweepID) -> String { "s\(id)" }

    /// `s12` (or `S12`) → 12.
    public static func parse(_ text: String) -> SweepID? {
        guard let first = text.first, first == "s" || first == "S", let id = SweepID(text.dropFirst()), id > 0 else { return nil }
        return id
    }
}

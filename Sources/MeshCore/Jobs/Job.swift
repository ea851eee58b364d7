/// Experiments (DESIGN.md §6): what a job asks for, where its code came from, and everything that
/// happened to it. All of it lives in ClusterState and changes only through the log.
public typealias JobID = UInt64

/// What a job needs from a node.
public struct Resources: Sendable, Hashable {
    public var slots: Int
    /// 0: no requirement.
    public var cpus: Int
    public var memoryMB: Int
    public var gpus: Int

    public init(slots: Int = 1, cpus: Int = 0, memoryMB: Int = 0, gpus: Int = 0) {
        self.slots = slots
        self.cpus = cpus
        self.memoryMB = memoryMB
        self.gpus = gpus
    }
}

/// What the user submitted.
public struct JobSpec: Sendable, Equatable {
    public var name: String
    /// The program and its arguments (executed directly, not through a shell).
    public var command: [String]
    public var env: [String: String]
    public var resources: Resources
    /// Run only on nodes of this class (empty: any).
    public var nodeClass: String
    /// Run only on nodes with all these labels.
    public var labels: [String: String]
    /// 0: no limit.
    public var timeoutSeconds: UInt64
    /// How many times a failed attempt (non-zero exit) is tried again.
    public var retries: Int
    /// Higher goes first; equal priorities run in submission order.
    public var priority: Int
    /// Globs (relative to the workspace) of result files.
    public var results: [String]
    /// Jobs that must succeed first.
    public var after: [JobID]
    /// How long a worker may be out of touch with the coordinator before it kills the job (and
    /// after which, plus a grace, the coordinator runs it elsewhere). 0: the mesh's default.
    public var leaseSeconds: UInt64
    /// Submit held: it waits for `mesh release`.
    public var held: Bool
    /// Where the command runs, relative to the workspace (empty: its root).
    public var workdir: String
    /// The sweep that created it (0: none), its stage there, and the values it was made with.
    public var sweep: SweepID
    public var stage: String
    public var parameters: [Parameter]
    /// Hash of what it runs (plans deduplicate by it; empty: never deduplicated).
    public var identity: String
    /// Runs only on this node (nil: any). The coordinator's canaries are pinned to the quarantined
    /// node they test.
    public var node: NodeID? = nil
    /// A canary: the only kind of job a quarantined node takes; its success re-admits the node,
    /// and it is never retried or requeued.
    public var canary: Bool = false
    /// Keep each attempt's workspace on its worker after it ends (`--keep-workspace`); by default
    /// it is deleted once the results are collected and the end is reported.
    public var keepWorkspace: Bool = false

    public init(
        name: String = "", command: [String], env: [String: String] = [:], resources: Resources = .init(),
        nodeClass: String = "", labels: [String: String] = [:], timeoutSeconds: UInt64 = 0, retries: Int = 0,
        priority: Int = 0, results: [String] = [], after: [JobID] = [], leaseSeconds: UInt64 = 0, held: Bool = false,
        workdir: String = "", sweep: SweepID = 0, stage: String = "", parameters: [Parameter] = [], identity: String = "",
        node: NodeID? = nil, canary: Bool = false, keepWorkspace: Bool = false
    ) {
        self.keepWorkspace = keepWorkspace
        self.name = name
        self.command = command
        self.env = env
        self.resources = resources
        self.nodeClass = nodeClass
        self.labels = labels
        self.timeoutSeconds = timeoutSeconds
        self.retries = retries
        self.priority = priority
        self.results = results
        self.after = after
        self.leaseSeconds = leaseSeconds
        self.held = held
        self.workdir = workdir
        self.sweep = sweep
        self.stage = stage
        self.parameters = parameters
        self.identity = identity
        self.node = node
        self.canary = canary
    }
}

extension JobSpec {
    /// Roughly its size on the wire.
    public var approximateSize: Int {
        128 + name.utf8.count + command.reduce(0) { $0 + 4 + $1.utf8.count } + env.reduce(0) { $0 + 8 + $1.key.utf8.count + $1.value.utf8.count }
            + parameters.reduce(0) { $0 + 8 + $1.name.utf8.count + $1.value.utf8.count } + results.reduce(0) { $0 + 4 + $1.utf8.count }
            + after.count * 10 + identity.utf8.count + stage.utf8.count + labels.count * 32 + nodeClass.utf8.count + workdir.utf8.count
    }
}

/// A content-addressed blob (a code bundle, a results bundle) and the nodes that hold it.
public struct BlobRef: Sendable, Equatable {
    /// SHA-256, hex.
    public var hash: String
    public var size: UInt64
    public var holders: [NodeID]

    public init(hash: String, size: UInt64, holders: [NodeID]) {
        self.hash = hash
        self.size = size
        self.holders = holders
    }
}

/// Where a job's code came from.
public struct Provenance: Sendable, Equatable {
    public enum Code: String, Sendable, Equatable {
        /// A git checkout: tracked and untracked-not-ignored files.
        case git
        /// A plain directory (`--code DIR`).
        case directory
        /// An empty workspace (`--no-code`).
        case none
    }

    public var code: Code
    public var remote: String
    public var commit: String
    public var branch: String
    /// `git diff --stat HEAD` at submit time (empty: clean).
    public var diffSummary: String
    /// The directory packed (on the submitting machine).
    public var directory: String
    public var bundle: BlobRef?
    /// user@host of the submitter.
    public var submitter: String

    public init(code: Code = .none, remote: String = "", commit: String = "", branch: String = "", diffSummary: String = "",
                directory: String = "", bundle: BlobRef? = nil, submitter: String = "") {
        self.code = code
        self.remote = remote
        self.commit = commit
        self.branch = branch
        self.diffSummary = diffSummary
        self.directory = directory
        self.bundle = bundle
        self.submitter = submitter
    }
}

public enum JobState: String, Sendable, CaseIterable {
    case pending, held
    /// Waiting for the jobs named in `after`.
    case waiting
    case assigned, running, succeeded, failed, cancelled

    public var isTerminal: Bool { self == .succeeded || self == .failed || self == .cancelled }
    /// Holding a place on a node.
    public var isActive: Bool { self == .assigned || self == .running }
}

/// How an attempt ended.
public enum AttemptOutcome: Sendable, Equatable {
    case exited(Int32)
    case signalled(Int32)
    case timedOut
    case cancelled
    /// The node was out of touch longer than the lease allows; the attempt may have been killed
    /// there (the worker kills it when its lease runs out).
    case lost(String)
    /// It could not start for the machine's reasons (no workspace, no supervisor): counts towards
    /// quarantine.
    case failedToStart(String)
    /// It cannot run as given (its working directory is not in its code, its code bundle cannot
    /// be unpacked): the job's failure, on any node.
    case rejected(String)

    public var succeeded: Bool { self == .exited(0) }

    /// Did the job itself fail (as opposed to the machine, the mesh or the user)?
    public var isJobFailure: Bool {
        switch self {
        case .exited(let c): c != 0
        case .signalled, .timedOut, .rejected: true
        case .cancelled, .lost, .failedToStart: false
        }
    }
}

public struct Attempt: Sendable, Equatable {
    public var number: Int
    public var node: NodeID
    /// The coordinator's term when it assigned the attempt.
    public var term: UInt64
    public var gpus: [Int]
    /// Unix milliseconds (for people; the mesh decides nothing by wall-clock time).
    public var assignedAt: Int64
    public var startedAt: Int64?
    public var endedAt: Int64?
    public var outcome: AttemptOutcome?
    /// Nodes that hold this attempt's log.
    public var logHolders: [NodeID]
    public var logBytes: UInt64
    /// Result paths the worker refused (outside the workspace, links, over a limit), with why;
    /// at most `Limits.maxRefused`, then a count of the rest.
    public var refused: [String] = []

    public init(number: Int, node: NodeID, term: UInt64, gpus: [Int], assignedAt: Int64) {
        self.number = number
        self.node = node
        self.term = term
        self.gpus = gpus
        self.assignedAt = assignedAt
        self.logHolders = []
        self.logBytes = 0
    }
}

/// One result file, as the worker found it in the workspace.
public struct ResultFile: Sendable, Equatable {
    public var path: String
    public var size: UInt64
    public var sha256: String

    public init(path: String, size: UInt64, sha256: String) {
        self.path = path
        self.size = size
        self.sha256 = sha256
    }
}

public struct JobEvent: Sendable, Equatable {
    public var state: JobState
    public var reason: String
    public var at: Int64
    public var index: UInt64

    public init(state: JobState, reason: String, at: Int64, index: UInt64) {
        self.state = state
        self.reason = reason
        self.at = at
        self.index = index
    }
}

public struct Job: Sendable, Equatable {
    public var id: JobID
    public var spec: JobSpec
    public var provenance: Provenance
    public var submittedAt: Int64
    /// The agent that accepted the submission (logs and results are copied there too).
    public var submittedVia: NodeID
    public var state: JobState
    public var reason: String
    public var history: [JobEvent]
    public var attempts: [Attempt]
    public var results: [ResultFile]
    /// The results packed as one blob, and who holds it.
    public var resultsBundle: BlobRef?
    /// A cancel was asked for while the job was on a node; it ends as cancelled.
    public var cancelRequested: Bool
    /// Attempts lost with their node (not counted against `retries`).
    public var lostAttempts: Int
    /// Failed attempts so far (counted against `retries`).
    public var failedAttempts: Int
    /// It failed because a dependency did (it comes back to waiting if that one is retried).
    public var dependencyFailed: Bool = false
    /// Its node is asked to stop the current attempt, after which the job waits in the queue
    /// again (a drain's deadline passed); not counted against its retries.
    public var requeueRequested: Bool = false

    public init(
        id: JobID, spec: JobSpec, provenance: Provenance, submittedAt: Int64, submittedVia: NodeID, state: JobState,
        reason: String, history: [JobEvent], attempts: [Attempt], results: [ResultFile], resultsBundle: BlobRef?,
        cancelRequested: Bool, lostAttempts: Int, failedAttempts: Int
    ) {
        self.id = id
        self.spec = spec
        self.provenance = provenance
        self.submittedAt = submittedAt
        self.submittedVia = submittedVia
        self.state = state
        self.reason = reason
        self.history = history
        self.attempts = attempts
        self.results = results
        self.resultsBundle = resultsBundle
        self.cancelRequested = cancelRequested
        self.lostAttempts = lostAttempts
        self.failedAttempts = failedAttempts
    }

    public var current: Attempt? { attempts.last }
    public var displayName: String { spec.name.isEmpty ? (spec.command.first ?? "job") : spec.name }
}

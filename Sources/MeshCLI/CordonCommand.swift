import ArgumentParser
import MeshAgent
import MeshCore

/// `mesh cordon` and `mesh uncordon`: replicated through the coordinator, visible on every node.
struct CordonCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cordon",
        abstract: "Stop new jobs from starting on a node (through the coordinator; every node sees it).",
        discussion: "Exits 0 once the change is committed, 1 if the node is unknown, 75 if no coordinator is reachable in time."
    )

    @Argument(help: "The node's name, as `mesh status` shows it.")
    var node: String

    @Option(name: .long, help: "Why (shown by `mesh status`).")
    var reason: String = ""

    @OptionGroup var data: DataOptions
    @OptionGroup var remote: RemoteOptions

    func run() throws {
        try runWrite(.cordon(name: node, reason: reason), data: data, remote: remote)
    }
}

struct UncordonCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "uncordon",
        abstract: "Let a cordoned node take new jobs again."
    )

    @Argument(help: "The node's name.")
    var node: String

    @OptionGroup var data: DataOptions
    @OptionGroup var remote: RemoteOptions

    func run() throws {
        try runWrite(.uncordon(name: node), data: data, remote: remote)
    }
}

struct SetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "set",
        abstract: "Change a setting of the whole mesh (replicated).",
        discussion: """
            max_voters: how many voters the coordinator keeps (odd, default 5).
            voter_grace_seconds: how long a voter may be dead before it is replaced (default 30).
            lease_seconds: how long a worker may be out of touch with the coordinator before it stops its jobs (default 60).
            lease_grace_seconds: added to the lease before the coordinator runs such jobs elsewhere (default 15).
            kill_grace_seconds: between SIGTERM and SIGKILL when a job is stopped (default 10).
            max_plan_jobs: the most jobs one plan or matrix may make (default 10000).
            quarantine_after: cordon a node whose last N attempts failed to start (workspace, code, supervisor: the machine's fault), 0: never (default 3).
            quarantine_canary_seconds: between canary jobs that test a quarantined node; one that succeeds re-admits it (default 30).
            scale_up: a shell command the coordinator runs when jobs have waited too long for capacity (empty: none). Its environment: MESH_TOKEN, MESH_WAITING, MESH_JOB, MESH_CLASS, MESH_SLOTS, MESH_GPUS.
            scale_up_after_seconds: how long a job waits before scale_up runs (default 60).
            scale_up_max: scale_up commands running at once (default 1).
            scale_up_pause_seconds: between two scale_up commands (default 120).
            """
    )

    @Argument(help: "The setting.")
    var key: String

    @Argument(help: "Its new value.")
    var value: String

    @OptionGroup var data: DataOptions
    @OptionGroup var remote: RemoteOptions

    func validate() throws {
        switch key {
        case "max_voters":
            guard let n = Int(value), n >= 1, n <= 9 else { throw ValidationError("max_voters is a number from 1 to 9") }
        case "voter_grace_seconds":
            guard let n = Double(value), n >= 1 else { throw ValidationError("voter_grace_seconds is a number of seconds, at least 1") }
        case "lease_seconds":
            guard let n = Double(value), n >= 1 else { throw ValidationError("lease_seconds is a number of seconds, at least 1") }
        case "kill_grace_seconds":
            guard let n = Double(value), n >= 0 else { throw ValidationError("kill_grace_seconds is a number of seconds") }
        case "lease_grace_seconds":
            guard let n = Double(value), n >= 0 else { throw ValidationError("lease_grace_seconds is a number of seconds") }
        case "max_plan_jobs":
            guard let n = Int(value), n >= 1 else { throw ValidationError("max_plan_jobs is a whole number of jobs, at least 1") }
        case "quarantine_after", "scale_up_max":
            guard let n = Int(value), n >= 0 else { throw ValidationError("\(key) is a whole number, at least 0") }
        case "quarantine_canary_seconds", "scale_up_after_seconds", "scale_up_pause_seconds":
            guard let n = Double(value), n >= 0 else { throw ValidationError("\(key) is a number of seconds") }
        case "scale_up":
            guard value.utf8.count <= 4096 else { throw ValidationError("scale_up is a shell command of at most 4 KiB") }
        case ClusterState.unfencedSetting where ClusterState.debugBuild:
            // Debug builds only: the chaos harness's proof that it sees duplicates (DESIGN.md §5).
            guard value == "0" || value == "1" else { throw ValidationError("\(key) is 0 or 1") }
        default:
            throw ValidationError("unknown setting '\(key)'; known: max_voters, voter_grace_seconds, lease_seconds, lease_grace_seconds, kill_grace_seconds, max_plan_jobs, quarantine_after, quarantine_canary_seconds, scale_up, scale_up_after_seconds, scale_up_max, scale_up_pause_seconds")
        }
    }

    func run() throws {
        try runWrite(.setSetting(key: key, value: value), data: data, remote: remote)
    }
}

/// Sends a write through the local agent (or `--to`) and reports the outcome.
func runWrite(_ command: ClusterState.Command, data: DataOptions, remote: RemoteOptions) throws {
    Logging.bootstrap(nil)
    try reportingErrors {
        let client = try MeshClient(address: try remote.target(data), secret: try remote.secret(data))
        defer { client.close() }
        let (outcome, _) = try client.write(command)
        switch outcome {
        case .done(let message), .created(_, let message): print(message)
        case .rejected(let message): throw WriteRejected(message: message)
        }
    }
}

struct WriteRejected: UserFacingError {
    var message: String
    var exitCode: Int32 { ExitStatus.error }
    var description: String { message }
}

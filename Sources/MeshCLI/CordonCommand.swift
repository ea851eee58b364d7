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
        discussion: ClusterState.Setting.allCases.map { "\($0.rawValue): \($0.help)." }.joined(separator: "\n")
    )

    @Argument(help: "The setting.")
    var key: String

    @Argument(help: "Its new value.")
    var value: String

    @OptionGroup var data: DataOptions
    @OptionGroup var remote: RemoteOptions

    func validate() throws {
        if key == ClusterState.unfencedSetting, ClusterState.debugBuild {
            // Debug builds only: the chaos harness's proof that it sees duplicates (DESIGN.md §5).
            guard value == "0" || value == "1" else { throw ValidationError("\(key) is 0 or 1") }
            return
        }
        guard let setting = ClusterState.Setting(rawValue: key) else {
            throw ValidationError("unknown setting '\(key)'; known: \(ClusterState.Setting.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if let problem = setting.problem(value) { throw ValidationError(problem) }
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

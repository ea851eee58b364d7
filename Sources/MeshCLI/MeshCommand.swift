import ArgumentParser
import MeshAgent
import MeshTransport
import MeshWire

/// `mesh`: the one binary of the mesh, every subcommand a type of its own.
public struct MeshCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "mesh",
        abstract: "A peer-to-peer mesh of lab machines that runs your experiments on whichever host is idle.",
        discussion: """
            Start with `mesh init` on one host; it prints a join token. Run `mesh join TOKEN` on every \
            other host, and `mesh status` anywhere. Every host of a mesh holds the same cluster key (in \
            $MESH_HOME, default ~/.mesh); anyone holding it can talk to the mesh.

            Exit codes: 0 ok, 1 error, 64 usage, 69 mesh unreachable or key refused, 75 retry later.
            """,
        version: "mesh \(MeshVersion.string) (protocol \(Wire.protocolVersion), libzmq \(ZeroMQ.version.major).\(ZeroMQ.version.minor).\(ZeroMQ.version.patch))",
        subcommands: [
            InitCommand.self, JoinCommand.self, StatusCommand.self, LeaveCommand.self, TokenCommand.self,
            SubmitCommand.self, JobsCommand.self, ShowCommand.self, LogsCommand.self, CancelCommand.self, RetryCommand.self,
            HoldCommand.self, ReleaseCommand.self, ResultsCommand.self, PlanCommand.self, SweepsCommand.self, ExportCommand.self,
            CordonCommand.self, UncordonCommand.self, DrainCommand.self, NodeCommand.self, SetCommand.self, SuperviseCommand.self,
            AgentCommand.self, PingCommand.self, CompletionsCommand.self,
        ]
    )

    public init() {}
}

/// Options that every command that touches a data directory shares.
struct DataOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The agent's data directory (default: $MESH_HOME, else ~/.mesh).", valueName: "DIR"))
    var dataDir: String?

    var directory: DataDirectory { DataDirectory.resolve(dataDir) }
}

/// Which agent a client command talks to, and with which key.
struct RemoteOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Talk to this agent instead of this host's (over TCP, with the cluster key).", valueName: "HOST:PORT"))
    var to: String?

    @Option(name: .long, help: ArgumentHelp("Cluster key file to use (default: the data directory's).", valueName: "FILE"))
    var key: String?

    @Option(name: .long, help: ArgumentHelp("A join token: its key, and (without --to) its first agent.", valueName: "TOKEN"))
    var token: String?

    func validate() throws {
        if let to { do { _ = try AgentAddress(parsing: to, defaultHost: "127.0.0.1") } catch { throw ValidationError(error.description) } }
        if let token { do { _ = try JoinToken(text: token) } catch { throw ValidationError(error.description) } }
        if token != nil, key != nil { throw ValidationError("--token and --key cannot go together") }
    }

    /// `--to`, else the token's first agent, else this host's agent over its local socket.
    func target(_ data: DataOptions) throws -> AgentAddress {
        if let to { return try AgentAddress(parsing: to, defaultHost: "127.0.0.1") }
        if let token, let first = try JoinToken(text: token).seeds.first { return first }
        return data.directory.localAddress
    }

    func secret(_ data: DataOptions) throws -> ClusterSecret {
        if let token { return try JoinToken(text: token).secret }
        return try loadSecret(keyFile: key, data: data).secret
    }
}

struct LogOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("trace, debug, info, notice, warning, error or critical (default: $MESH_LOG_LEVEL, else info).", valueName: "LEVEL"))
    var logLevel: LogLevelArgument?
}

/// Runs a command body and turns the errors a user can meet into a message on stderr and the exit
/// code DESIGN.md §1 gives them.
func reportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let e as any UserFacingError {
        printError("mesh: \(e.description)")
        throw ExitCode(e.exitCode)
    } catch let e as ExitCode {
        throw e
    } catch let e as ValidationError {
        throw e
    } catch {
        printError("mesh: error: \(error)")
        throw ExitCode(ExitStatus.error)
    }
}

func printError(_ message: String) {
    var stderr = StandardError()
    print(message, to: &stderr)
}

struct StandardError: TextOutputStream {
    mutating func write(_ string: String) {
        FileHandleWriter.stderr(string)
    }
}

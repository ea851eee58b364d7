import ArgumentParser
import Logging
import MeshAgent

struct AgentCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "Run this host's agent in the foreground until SIGINT or SIGTERM.",
        discussion: """
            The agent listens for peers and remote clients on --listen (TCP, CURVE-encrypted) and for \
            local commands on agent.sock in the data directory. It writes the endpoint it bound to \
            agent.endpoint there, so --listen 127.0.0.1:0 picks a free port that scripts can read.
            """
    )

    @OptionGroup var data: DataOptions
    @OptionGroup var log: LogOptions

    @Option(name: .long, help: ArgumentHelp("This node's name in the mesh (default: the host name).", valueName: "NAME"))
    var name: String = AgentConfiguration.defaultName

    @Option(name: .long, help: ArgumentHelp("Address to listen on; port 0 picks a free port.", valueName: "HOST:PORT"))
    var listen: String = "0.0.0.0:\(AgentAddress.defaultPort)"

    @Option(name: .long, help: ArgumentHelp("Address other hosts should dial (default: the listen address).", valueName: "HOST:PORT"))
    var advertise: String?

    func validate() throws {
        do {
            _ = try AgentAddress(parsing: listen)
            if let advertise { _ = try AgentAddress(parsing: advertise, defaultHost: "") }
        } catch {
            throw ValidationError(error.description)
        }
        if name.isEmpty || name.contains(where: { $0.isWhitespace || $0 == "/" }) {
            throw ValidationError("a node name is non-empty and has no spaces or slashes: '\(name)'")
        }
    }

    func run() throws {
        Logging.bootstrap(log.logLevel)
        SignalWaiter.install()
        try reportingErrors {
            let config = AgentConfiguration(
                name: name, dataDirectory: data.directory, listen: try AgentAddress(parsing: listen),
                advertise: try advertise.map { try AgentAddress(parsing: $0) })
            let agent = try Agent.start(config)
            while agent.isRunning {
                if let sig = SignalWaiter.wait(timeout: .milliseconds(500)) {
                    Logger(label: "mesh.agent").info("received signal \(sig)")
                    break
                }
            }
            agent.shutdown()
        }
    }
}

import ArgumentParser
import Foundation
import Logging
import MeshAgent
import MeshWire

struct AgentCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "Run this host's agent in the foreground until SIGINT or SIGTERM (what systemd runs).",
        discussion: """
            The agent listens for peers and remote clients on --listen (TCP, CURVE-encrypted) and for \
            local commands on agent.sock in the data directory. It writes the endpoint it bound to \
            agent.endpoint there, so --listen 127.0.0.1:0 picks a free port that scripts can read. \
            With --join it joins an existing mesh through those agents, retrying while none answers.
            """
    )

    @OptionGroup var data: DataOptions
    @OptionGroup var agent: AgentOptions
    @OptionGroup var log: LogOptions

    @Option(name: .customLong("join"), help: ArgumentHelp("An agent of the mesh to join through (repeatable).", valueName: "HOST:PORT"))
    var seeds: [String] = []

    func validate() throws {
        for s in seeds {
            do { _ = try AgentAddress(parsing: s, defaultHost: "127.0.0.1") } catch { throw ValidationError(error.description) }
        }
    }

    func run() throws {
        Logging.bootstrap(log.logLevel)
        SignalWaiter.install()
        // A join token in the environment (a scale_up command's, say) is not for the agent's
        // children: setup commands, idle commands and jobs.
        unsetenv("MESH_TOKEN")
        try reportingErrors {
            let agent = try Agent.start(try self.agent.configuration(data.directory, seeds: seeds))
            try runUntilStopped(agent)
        }
    }
}

/// Keeps a foreground agent running until a signal, `mesh leave`, or a join that cannot succeed.
func runUntilStopped(_ agent: Agent) throws {
    let logger = Logger(label: "mesh.agent")
    defer { agent.shutdown() }
    while agent.isRunning && !agent.stopRequested {
        if let sig = SignalWaiter.wait(timeout: .milliseconds(250)) {
            logger.info("received signal \(sig)")
            return
        }
        if let failure = agent.joinFailure {
            throw JoinError.refused(failure)
        }
    }
}

import ArgumentParser
import Foundation
import MeshAgent
import MeshCore
import MeshTransport

struct JoinCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "join",
        abstract: "Add this host to a mesh: store its key, start the agent, and wait until it is a member.",
        discussion: """
            TOKEN is what `mesh init` (or `mesh token` on any member) printed. The agent starts in the \
            background (log: agent.log in the data directory) unless --foreground is given. Exits 69 \
            if no agent of the token answers or they refuse its key, 1 if the mesh refuses this host \
            (its name is taken), and stops the agent again in both cases. Running it again on a \
            member changes nothing.
            """
    )

    @Argument(help: "The join token (mesh1-…).")
    var token: String

    @OptionGroup var data: DataOptions
    @OptionGroup var agent: AgentOptions
    @OptionGroup var log: LogOptions

    @Flag(name: .long, help: "Run the agent in this process instead of in the background.")
    var foreground = false

    @Option(name: .long, help: ArgumentHelp("How long to wait for the mesh to accept this host.", valueName: "DURATION"))
    var timeout = TimeSpan(.seconds(30), text: "30s")

    func run() throws {
        Logging.bootstrap(log.logLevel)
        try reportingErrors {
            let token = try JoinToken(text: token)
            let dir = data.directory
            if foreground {
                SignalWaiter.install()
                try dir.create()
                if !dir.hasKey { try dir.writeKey(token.secret) }
                guard try dir.readKey() == token.secret else {
                    throw JoinError.otherMesh(dir.path, try dir.readKey().keys.fingerprint)
                }
                let running = try Agent.start(try agent.configuration(dir, seeds: token.seeds.map(\.description)))
                try runUntilStopped(running)
                return
            }
            switch try MeshSetup.join(token, dir: dir, agentArguments: agent.arguments + log.arguments, timeout: timeout.duration) {
            case .joined(let started):
                let alive = started.status.members.filter { Membership.State($0.record.state) == .alive }.map(\.record.meta.name).sorted()
                print("Joined mesh \(token.secret.keys.fingerprint) as \(agent.name): \(alive.count) members alive (\(alive.joined(separator: ", "))).")
                print("The agent runs in the background (pid \(started.pid), log \(dir.logFile)); `mesh status` shows the mesh.")
            case .alreadyMember(let pid, let status):
                print("Already a member: the agent of \(dir.path) is running (pid \(pid)) as \(status.node.name); nothing to do.")
            }
        }
    }
}

struct LeaveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "leave",
        abstract: "Leave the mesh gracefully and stop this host's agent.",
        discussion: "The other members see this host as 'left' (not 'dead'). `mesh join` brings it back."
    )

    @OptionGroup var data: DataOptions

    func run() throws {
        Logging.bootstrap(nil)
        try reportingErrors {
            let told = try MeshSetup.leave(data.directory)
            print("Left the mesh (told \(told) member\(told == 1 ? "" : "s") directly); the agent has stopped.")
        }
    }
}

struct TokenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "Print the join token of this host's mesh (it holds the cluster secret).",
        discussion: "The token names this agent and up to two other live members as the agents to join through."
    )

    @OptionGroup var data: DataOptions

    func run() throws {
        Logging.bootstrap(nil)
        try reportingErrors {
            print(try MeshSetup.token(data.directory).text)
        }
    }
}

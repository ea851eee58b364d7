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

    @Argument(help: ArgumentHelp("The join token (mesh1-…); - reads it from standard input; without it, $MESH_TOKEN.", valueName: "TOKEN"))
    var token: String?

    @OptionGroup var data: DataOptions
    @OptionGroup var agent: AgentOptions
    @OptionGroup var log: LogOptions

    @Flag(name: .long, help: "Run the agent in this process instead of in the background.")
    var foreground = false

    @Option(name: .long, help: ArgumentHelp("How long to wait for the mesh to accept this host.", valueName: "DURATION"))
    var timeout = TimeSpan(.seconds(30), text: "30s")

    func validate() throws {
        try TimeSpan.check(timeout, "--timeout", 0.1...86_400)
    }

    func run() throws {
        Logging.bootstrap(log.logLevel)
        try reportingErrors {
            let token = try JoinToken(text: try tokenText())
            // The token holds the cluster secret: the agent, its setup commands and its jobs must
            // not inherit it (the key is in the data directory, mode 0600).
            unsetenv("MESH_TOKEN")
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
                if !agent.setup.isEmpty {
                    let client = try MeshClient(address: dir.localAddress, secret: token.secret)
                    defer { client.close() }
                    try waitForSetup(client, dir: dir)
                }
            case .alreadyMember(let pid, let status):
                print("Already a member: the agent of \(dir.path) is running (pid \(pid)) as \(status.node.name); nothing to do.")
                // A member whose machine setup failed (or still runs) is not ready: say so, as
                // the first join would have (a re-run must not turn a failure into success).
                let setup = status.members.first { $0.record.node == status.nodeID }?.record.meta.setup ?? ""
                if !setup.isEmpty {
                    let client = try MeshClient(address: dir.localAddress, secret: token.secret)
                    defer { client.close() }
                    try waitForSetup(client, dir: dir)
                }
            }
        }
    }

    /// The token from the argument, standard input (`-`) or `$MESH_TOKEN`: the last two keep it
    /// off the command line, which every user of the host can read (/proc/PID/cmdline).
    private func tokenText() throws -> String {
        switch token {
        case "-":
            guard let line = readLine(strippingNewline: true), !line.isEmpty else {
                throw ValidationError("no token on standard input (mesh join - reads one line)")
            }
            return line.trimmingCharacters(in: .whitespaces)
        case let t?:
            return t
        case nil:
            guard let t = ProcessInfo.processInfo.environment["MESH_TOKEN"], !t.isEmpty else {
                throw ValidationError("give the join token: mesh join TOKEN, mesh join - (from standard input), or MESH_TOKEN=TOKEN mesh join")
            }
            return t.trimmingCharacters(in: .whitespacesAndNewlines)
        }
    }
}

struct LeaveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "leave",
        abstract: "Drain this host, then leave the mesh gracefully and stop its agent.",
        discussion: """
            First the host is drained (`mesh drain`): no new jobs start here and the running ones \
            finish (with --deadline, what still runs then is requeued elsewhere). Then, if it \
            coordinates, it hands over to another voter, gives up its vote and leaves; the other \
            members see it as 'left' (not 'dead'). `mesh join` brings it back (and ends the drain).
            """
    )

    @OptionGroup var data: DataOptions

    @Option(name: .long, help: ArgumentHelp("Requeue what still runs here after this long.", valueName: "DURATION"))
    var deadline: TimeSpan?

    @Flag(name: .long, help: "Leave at once, without draining (running jobs go on until their lease runs out, then run elsewhere).")
    var now = false

    func validate() throws {
        try TimeSpan.check(deadline, "--deadline", 0.001...Double(Limits.maxDrainDeadlineMillis / 1000))
    }

    func run() throws {
        Logging.bootstrap(nil)
        try reportingErrors {
            if !now {
                let dir = data.directory
                guard AgentLauncher.runningAgent(dir) != nil else { throw JoinError.notRunning(dir.path) }
                let client = try MeshClient(address: dir.localAddress, secret: try dir.readKey())
                defer { client.close() }
                let me = try client.status(local: true).node.name
                try drain(me, deadline: deadline?.duration, leaving: true, client: client)
                try waitUntilDrained(me, client: client)
            }
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

/// Waits until this node's machine setup is done; throws (exit 1) with its reason and the end of
/// its output if it failed. The agent keeps running either way (out of the schedule on failure).
func waitForSetup(_ client: MeshClient, dir: DataDirectory) throws {
    print("Running the machine setup (output in \(dir.path)/setup.log)…")
    while true {
        let s = try client.status(local: true)
        let setup = s.members.first { $0.record.node == s.nodeID }?.record.meta.setup ?? ""
        if setup.isEmpty {
            print("Setup done: the node takes jobs.")
            return
        }
        if setup.hasPrefix("failed") {
            let log = (try? String(contentsOfFile: dir.path + "/setup.log", encoding: .utf8)) ?? ""
            let tail = log.split(separator: "\n", omittingEmptySubsequences: false).suffix(20).joined(separator: "\n")
            throw SetupFailed(message: "setup \(setup); the node is a member but takes no jobs until `mesh node setup \(s.node.name)` succeeds. The end of setup.log:\n\(tail)")
        }
        Thread.sleep(forTimeInterval: 0.1)
    }
}

struct SetupFailed: UserFacingError {
    var message: String
    var exitCode: Int32 { ExitStatus.error }
    var description: String { message }
}

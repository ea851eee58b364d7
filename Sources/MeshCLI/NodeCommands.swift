import ArgumentParser
import Foundation
import MeshAgent
import MeshCore
import MeshWire

/// `mesh drain NODE`: no new jobs there, running ones may finish (until `--deadline`).
struct DrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drain",
        abstract: "Let a node's running jobs finish and start no new ones there (through the coordinator).",
        discussion: """
            With --deadline, whatever still runs there when it passes is stopped (SIGTERM, SIGKILL after \
            kill_grace_seconds) and put back in the queue, without counting against its retries. \
            `mesh status` shows the node as draining, then drained; `mesh uncordon NODE` ends a drain.
            """
    )

    @Argument(help: "The node's name, as `mesh status` shows it.")
    var node: String

    @Option(name: .long, help: ArgumentHelp("Requeue what still runs there after this long (e.g. 30m).", valueName: "DURATION"))
    var deadline: TimeSpan?

    @Flag(name: .long, help: "Return only once nothing runs there any more.")
    var wait = false

    @OptionGroup var data: DataOptions
    @OptionGroup var remote: RemoteOptions

    func validate() throws {
        try TimeSpan.check(deadline, "--deadline", 0.001...Double(Limits.maxDrainDeadlineMillis / 1000))
    }

    func run() throws {
        Logging.bootstrap(nil)
        try reportingErrors {
            let client = try MeshClient(address: try remote.target(data), secret: try remote.secret(data))
            defer { client.close() }
            try drain(node, deadline: deadline?.duration, leaving: false, client: client)
            if wait { try waitUntilDrained(node, client: client) }
        }
    }
}

/// Writes a drain of `node` and prints the coordinator's answer.
func drain(_ node: String, deadline: Duration?, leaving: Bool, client: MeshClient) throws {
    let millis = deadline.map { Swift.min(Swift.max(1, Int64($0.milliseconds.rounded())), Limits.maxDrainDeadlineMillis) } ?? 0
    let (outcome, _) = try client.write(.drain(name: node, deadlineMillis: millis, leaving: leaving))
    switch outcome {
    case .done(let message), .created(_, let message): print(message)
    case .rejected(let message): throw WriteRejected(message: message)
    }
}

/// Polls the coordinator until no job is assigned to or running on `node`.
func waitUntilDrained(_ node: String, client: MeshClient) throws {
    var last = -1
    while true {
        let s = try client.status(timeout: .seconds(5))
        // Only the coordinator's word: a node's own view may not have applied an assignment made
        // just before the drain (during an election the local agent answers from its own).
        guard s.coordinator.fromLeader else {
            if last != -2 { print("no coordinator answers yet; waiting for one to tell what runs on \(node)") }
            last = -2
            Thread.sleep(forTimeInterval: 0.5)
            continue
        }
        guard let record = s.nodes.first(where: { $0.name == node }) else { throw WriteRejected(message: "no node named '\(node)' in the mesh") }
        let running = s.jobs.filter { ($0.state == "running" || $0.state == "assigned") && $0.attempts.last?.node == record.id }.map(\.id)
        if running.isEmpty {
            print("\(node) is drained: nothing runs there.")
            return
        }
        if running.count != last {
            print("waiting for \(running.count) job\(running.count == 1 ? "" : "s") on \(node) to end: \(running.prefix(10).map(String.init).joined(separator: ", "))")
            last = running.count
        }
        Thread.sleep(forTimeInterval: 0.5)
    }
}

/// `mesh node setup NODE [-- CMD…]`.
struct NodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "node",
        abstract: "Look after one node of the mesh.",
        subcommands: [NodeSetupCommand.self]
    )
}

struct NodeSetupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "setup",
        abstract: "Run a node's machine setup again: the given commands (which replace its list) or the ones it has.",
        discussion: """
            Each command runs under /bin/sh -c on that node, in order, with {MACHINE} replaced by its \
            address; the node takes no jobs until all have succeeded. Prints the end of their output; \
            exits 1 if one failed (the node then stays out of the schedule, `mesh status` says why).
            """
    )

    @Argument(help: "The node's name, as `mesh status` shows it.")
    var node: String

    @Argument(parsing: .postTerminator, help: "Setup commands (after --), each one shell command.")
    var commands: [String] = []

    @Option(name: .long, help: ArgumentHelp("How long to wait for the setup to finish.", valueName: "DURATION"))
    var timeout = TimeSpan(.seconds(3600), text: "1h")

    @OptionGroup var data: DataOptions
    @OptionGroup var remote: RemoteOptions

    func validate() throws {
        try TimeSpan.check(timeout, "--timeout", 1...Double(AgentOptions.maxSetupSeconds))
    }

    func run() throws {
        Logging.bootstrap(nil)
        try reportingErrors {
            let secret = try remote.secret(data)
            let client = try MeshClient(address: try remote.target(data), secret: secret)
            let status = try client.status()
            client.close()
            guard let member = status.members.first(where: { $0.record.meta.name == node }) else {
                throw WriteRejected(message: "no member named '\(node)' in the mesh")
            }
            guard Membership.State(member.record.state) == .alive else {
                throw WriteRejected(message: "\(node) is \(Membership.State(member.record.state).rawValue); its setup can run only while it is alive")
            }
            let target = try AgentAddress(parsing: member.record.meta.address)
            let agent = try MeshClient(address: target, secret: secret)
            defer { agent.close() }
            var request = WireSetupRequest()
            request.commands = commands
            request.replace = !commands.isEmpty
            print("running the setup of \(node) (\(target))…")
            let reply = try agent.call(.setupRequest(request), timeout: timeout.duration)
            guard case .setupReply(let r) = reply.body else { throw WriteRejected(message: "unexpected answer from \(node)") }
            if !r.output.isEmpty { print(r.output, terminator: r.output.hasSuffix("\n") ? "" : "\n") }
            print(r.message)
            if !r.ok { throw ExitCode(ExitStatus.error) }
        }
    }
}

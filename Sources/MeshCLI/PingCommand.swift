import ArgumentParser
import Foundation
import MeshAgent
import MeshWire

struct PingCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ping",
        abstract: "Check that an agent answers, and how fast, with the cluster key.",
        discussion: """
            Without --to, pings this host's agent over its local socket. With --from, asks that agent \
            to ping the --to agent over its own peer connection (agent to agent). Exits 69 if the \
            agent cannot be reached or refuses the key.
            """
    )

    @OptionGroup var data: DataOptions
    @OptionGroup var remote: RemoteOptions

    @Option(name: .long, help: ArgumentHelp("Ask this agent ('local' for this host's) to do the pinging.", valueName: "HOST:PORT|local"))
    var from: String?

    @Option(name: .shortAndLong, help: "Number of pings.")
    var count: Int = 1

    @Option(name: .long, help: ArgumentHelp("Pause between pings.", valueName: "DURATION"))
    var interval = TimeSpan(.milliseconds(200), text: "200ms")

    @Option(name: .long, help: ArgumentHelp("How long to wait for each answer.", valueName: "DURATION"))
    var timeout = TimeSpan(.seconds(3), text: "3s")

    @Flag(name: .long, help: "Print the results as JSON.")
    var json = false

    func validate() throws {
        try checkBound(count, "--count", 1...1_000_000)
        try TimeSpan.check(interval, "--interval", 0...3600)
        try TimeSpan.check(timeout, "--timeout", 0.001...3600)
        if from != nil && remote.to == nil { throw ValidationError("--from needs --to: the agent that should be pinged") }
        do {
            if let from, from != "local" { _ = try AgentAddress(parsing: from, defaultHost: "127.0.0.1") }
        } catch {
            throw ValidationError(error.description)
        }
    }

    func run() throws {
        Logging.bootstrap(nil)
        try reportingErrors {
            let secret = try remote.secret(data)
            let target = try remote.target(data)
            let via: AgentAddress? = try from.map { $0 == "local" ? data.directory.localAddress : try AgentAddress(parsing: $0, defaultHost: "127.0.0.1") }
            let client = try MeshClient(address: via ?? target, secret: secret)
            defer { client.close() }

            var replies: [PingReport.Reply] = []
            var lastError: ClientError?
            for seq in 1...count {
                if seq > 1 { Thread.sleep(forTimeInterval: interval.duration.milliseconds / 1000) }
                do throws(ClientError) {
                    let reply: PingReport.Reply
                    if via != nil {
                        let r = try client.pingPeer(target, timeout: timeout.duration)
                        reply = .init(seq: seq, node: r.target.name, address: r.target.advertise, version: r.target.version,
                                      mesh: r.target.meshFingerprint, ms: Double(r.roundTripNanos) / 1e6, via: r.via.name)
                    } else {
                        let (node, rtt) = try client.ping(timeout: timeout.duration)
                        reply = .init(seq: seq, node: node.name, address: node.advertise, version: node.version,
                                      mesh: node.meshFingerprint, ms: rtt.milliseconds, via: nil)
                    }
                    replies.append(reply)
                    if !json { print(reply.line) }
                } catch {
                    lastError = error
                    // A refused key or a bad request will not change on retry.
                    if case .unreachable = error {} else if case .remote(_, .timeout, _) = error {} else { throw error }
                    if !json { printError("mesh: \(error.description)") }
                }
            }
            let report = PingReport(target: target.description, sent: count, replies: replies)
            if json { try printJSON(report) } else if count > 1 { print(report.summary) }
            if replies.isEmpty, let lastError { throw ExitCode(lastError.exitCode) }
            if replies.count < count { throw ExitCode(ExitStatus.error) }
        }
    }
}

/// What `mesh ping` found, for text and `--json`.
struct PingReport: Encodable {
    struct Reply: Encodable {
        var seq: Int
        var node: String
        var address: String
        var version: String
        var mesh: String
        var ms: Double
        var via: String?

        var line: String {
            let how = via.map { " (from \($0))" } ?? ""
            return "pong from \(node) at \(address)\(how): seq=\(seq) time=\(String(format: "%.3f", ms)) ms (mesh \(version), key \(mesh))"
        }
    }

    var target: String
    var sent: Int
    var replies: [Reply]

    var summary: String {
        let ms = replies.map(\.ms).sorted()
        let lost = sent - replies.count
        var s = "\(sent) sent, \(replies.count) answered, \(lost) lost"
        if !ms.isEmpty {
            let p50 = ms[ms.count / 2]
            s += String(format: "; min/p50/max = %.3f/%.3f/%.3f ms", ms.first!, p50, ms.last!)
        }
        return s
    }
}

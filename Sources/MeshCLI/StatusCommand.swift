import ArgumentParser
import Foundation
import MeshAgent
import MeshCore
import MeshTransport
import MeshWire

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the mesh as an agent sees it: every member, its state, resources and when it was last heard.",
        discussion: """
            Asks this host's agent, or any agent with --to (and the cluster key); the agent passes the \
            question to the coordinator unless --local. Exits 69 if no agent answers.
            """
    )

    @Flag(name: .long, help: "This agent's own view, without asking the coordinator.")
    var local = false

    @OptionGroup var data: DataOptions
    @OptionGroup var remote: RemoteOptions

    @Flag(name: .long, help: "Print the status as JSON.")
    var json = false

    @Flag(name: .long, help: "Refresh in place until interrupted.")
    var watch = false

    @Option(name: .long, help: ArgumentHelp("Refresh interval for --watch.", valueName: "DURATION"))
    var interval = TimeSpan(.seconds(1), text: "1s")

    func validate() throws {
        if watch && json { throw ValidationError("--watch and --json do not go together") }
        try TimeSpan.check(interval, "--interval", 0.05...3600)
    }

    func run() throws {
        Logging.bootstrap(nil)
        try reportingErrors {
            let secret = try remote.secret(data)
            let client = try MeshClient(address: try remote.target(data), secret: secret)
            defer { client.close() }
            repeat {
                let status = try client.status(local: local)
                if json {
                    try printJSON(StatusReport(status, mesh: secret.keys.fingerprint))
                } else {
                    if watch { print("\u{1B}[H\u{1B}[2J", terminator: "") }
                    print(StatusReport(status, mesh: secret.keys.fingerprint).text)
                    if watch { print("(every \(interval); Ctrl-C to stop)") }
                }
                if watch { Thread.sleep(forTimeInterval: interval.duration.milliseconds / 1000) }
            } while watch
        }
    }
}

/// `mesh status` as text and as JSON.
struct StatusReport: Encodable {
    struct Member: Encodable {
        var id: String
        var name: String
        var address: String
        var state: String
        var incarnation: UInt64
        var nodeClass: String
        var labels: [String: String]
        var slots: UInt32
        var cpus: UInt32
        var memoryMB: UInt64
        var gpus: UInt32
        var gpuModel: String
        var version: String
        var cordoned: Bool
        var lastHeardMsAgo: Int64?
        var stateSinceMsAgo: Int64
        var isSelf: Bool
        var role: String
        var cordonReason: String?
        /// `mesh drain` (or leave) in progress: no new jobs; `drained` once nothing runs there.
        var draining: Bool
        var drained: Bool
        /// What still runs this long after the coordinator saw the drain is requeued.
        var drainDeadlineSeconds: Double?
        var quarantined: Bool
        /// Machine setup still running ("running: …") or failed ("failed: …"); nil once done.
        var setup: String?
        /// Whether the mesh takes jobs there, in a word or two: ready, cordoned, draining,
        /// drained, quarantined, setting up, setup failed (plus the gossip state unless alive).
        var condition: String
    }

    struct Coordinator: Encodable {
        var leader: String?
        var term: UInt64
        var voters: [String]
        var nonVoters: [String]
        var faultTolerance: UInt32
        var commitIndex: UInt64
        var fromLeader: Bool
    }

    struct Join: Encodable {
        var state: String
        var seeds: [String]
        var error: String?
    }

    var mesh: String
    var node: String
    var nodeID: String
    var localHealth: UInt32
    var join: Join
    var coordinator: Coordinator
    var members: [Member]
    /// Jobs on nodes (with their node), and the first few queued.
    var jobs: [QueuedJob]
    /// How many jobs the mesh has in each state.
    var jobCounts: [String: UInt64]

    struct QueuedJob: Encodable {
        var id: UInt64
        var name: String
        var state: String
        var node: String?
        var reason: String
    }

    init(_ s: WireStatusReply, mesh: String) {
        self.mesh = mesh
        node = s.node.name
        nodeID = NodeID(s.nodeID).description
        localHealth = s.localHealth
        let joinState: String = switch s.join.state {
        case .founder: "founder"
        case .joining: "joining"
        case .joined: "joined"
        case .failed: "failed"
        default: "unknown"
        }
        join = Join(state: joinState, seeds: s.join.seeds, error: s.join.error.isEmpty ? nil : s.join.error)
        let names = Dictionary(s.members.map { ($0.record.node, $0.record.meta.name) }, uniquingKeysWith: { a, _ in a })
        func name(_ id: UInt64) -> String { names[id] ?? NodeID(id).description }
        let c = s.coordinator
        coordinator = Coordinator(
            leader: c.leader == 0 ? nil : name(c.leader), term: c.term, voters: c.voters.map(name).sorted(),
            nonVoters: c.learners.map(name).sorted(), faultTolerance: c.faultTolerance, commitIndex: c.commitIndex, fromLeader: c.fromLeader)
        let registry = Dictionary(s.nodes.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        jobs = s.jobs.map { j in
            QueuedJob(id: j.id, name: j.spec.name.isEmpty ? (j.spec.command.first ?? "job") : j.spec.name, state: j.state,
                      node: (j.state == "running" || j.state == "assigned") ? j.attempts.last.map { name($0.node) } : nil, reason: j.reason)
        }
        jobCounts = s.jobCounts
        let voters = Set(c.voters), learners = Set(c.learners)
        let runningOn = Dictionary(grouping: jobs.filter { $0.node != nil }, by: { $0.node! }).mapValues(\.count)
        members = s.members.map { m in
            let r = m.record, meta = r.meta
            let reg = registry[r.node]
            let draining = reg?.draining ?? false
            let running = runningOn[meta.name] ?? 0
            let setup: String? = meta.setup.isEmpty ? nil : meta.setup
            let gossip = Membership.State(r.state).rawValue
            var condition = if let setup { setup.hasPrefix("failed") ? "setup failed" : "setting up" }
                else if reg?.quarantined == true { "quarantined" }
                else if draining { running > 0 ? "draining (\(running) running)" : "drained" }
                else if reg?.cordoned ?? meta.cordoned { "cordoned" }
                else { "ready" }
            if gossip != "alive" { condition = gossip + (condition == "ready" ? "" : ", " + condition) }
            let role = r.node == c.leader ? "coordinator" : voters.contains(r.node) ? "voter" : learners.contains(r.node) ? "non-voter" : "-"
            return Member(
                id: NodeID(r.node).description, name: meta.name, address: meta.address,
                state: Membership.State(r.state).rawValue, incarnation: r.incarnation, nodeClass: meta.nodeClass,
                labels: meta.labels, slots: meta.slots, cpus: meta.cpus, memoryMB: meta.memoryMb, gpus: meta.gpus,
                gpuModel: meta.gpuModel, version: meta.version, cordoned: registry[r.node]?.cordoned ?? meta.cordoned,
                lastHeardMsAgo: m.lastHeardMsAgo >= 0 ? m.lastHeardMsAgo : nil, stateSinceMsAgo: m.stateSinceMsAgo,
                isSelf: r.node == s.nodeID, role: role,
                cordonReason: reg.flatMap { $0.cordonReason.isEmpty ? nil : $0.cordonReason },
                draining: draining, drained: draining && running == 0, drainDeadlineSeconds: draining && (reg?.drainDeadlineMs ?? 0) > 0 ? Double(reg!.drainDeadlineMs) / 1000 : nil, quarantined: reg?.quarantined ?? false, setup: setup,
                condition: condition)
        }
    }

    var text: String {
        var counts: [String: Int] = [:]
        for m in members { counts[m.state, default: 0] += 1 }
        let summary = ["alive", "suspect", "dead", "left"].compactMap { s in counts[s].map { "\($0) \(s)" } }.joined(separator: ", ")
        var out = "mesh \(mesh) · \(members.count) member\(members.count == 1 ? "" : "s") (\(summary)) · seen from \(node)"
        if localHealth > 0 { out += " · local health \(localHealth) (slow or lossy network here)" }
        out += "\n"
        out += coordinatorLine + "\n"
        switch join.state {
        case "joining": out += "joining through \(join.seeds.joined(separator: ", "))\(join.error.map { " (last error: \($0))" } ?? "")\n"
        case "failed": out += "join failed: \(join.error ?? "")\n"
        default: break
        }
        let rows = members.map { m -> [String] in
            [m.name + (m.isSelf ? " *" : ""), m.address, m.condition == "ready" ? m.state : m.condition, m.role,
             m.nodeClass.isEmpty ? "-" : m.nodeClass, "\(m.slots)", "\(m.cpus)",
             Self.memory(m.memoryMB), m.gpus == 0 ? "-" : "\(m.gpus)" + (m.gpuModel.isEmpty ? "" : " \(m.gpuModel)"),
             m.version, "\(m.incarnation)", m.isSelf ? "-" : Self.ago(m.lastHeardMsAgo), running(on: m.name)]
        }
        out += Table(header: ["NAME", "ADDRESS", "STATE", "ROLE", "CLASS", "SLOTS", "CPUS", "MEMORY", "GPUS", "VERSION", "INC", "LAST HEARD", "RUNNING"], rows: rows).text
        let queued = jobs.filter { $0.node == nil }
        let waiting = ["pending", "waiting", "held"].compactMap { s in jobCounts[s].map { "\($0) \(s)" } }
        let waitingCount = ["pending", "waiting", "held"].reduce(UInt64(0)) { $0 + (jobCounts[$1] ?? 0) }
        out += "\njobs: \((jobCounts["running"] ?? 0) + (jobCounts["assigned"] ?? 0)) running"
        if !waiting.isEmpty {
            out += " · queue: " + waiting.joined(separator: ", ")
            for j in queued.prefix(5) { out += "\n  \(j.id) \(j.name.prefix(40)): \(j.state)\(j.reason.isEmpty ? "" : " (\(j.reason))")" }
            if waitingCount > UInt64(queued.prefix(5).count) { out += "\n  … \(waitingCount - UInt64(queued.prefix(5).count)) more (mesh jobs --state pending)" }
        }
        let ended = ["succeeded", "failed", "cancelled"].compactMap { s in jobCounts[s].map { "\($0) \(s)" } }
        if !ended.isEmpty { out += "\nended: " + ended.joined(separator: ", ") }
        var reasons = members.compactMap { m -> String? in
            if m.draining {
                return "\(m.name) \(m.drained ? "drained" : "draining")" + (m.drainDeadlineSeconds.map { ": what still runs \(Self.seconds($0)) after the drain began is requeued" } ?? "")
            }
            return m.cordonReason.map { "\(m.name) \(m.quarantined ? "" : "cordoned: ")\($0)" }
        }
        reasons += members.compactMap { m in m.setup.map { "\(m.name) setup \($0)" } }
        let versions = Set(members.filter { $0.state == "alive" }.map(\.version))
        if versions.count > 1 {
            reasons.append("mixed versions: " + versions.sorted().map { v in "\(v) (\(members.filter { $0.version == v && $0.state == "alive" }.count))" }.joined(separator: ", "))
        }
        if !reasons.isEmpty { out += "\n" + reasons.joined(separator: "\n") }
        return out
    }

    func running(on node: String) -> String {
        let ids = jobs.filter { $0.node == node }.map { "\($0.id)" }
        return ids.isEmpty ? "-" : ids.prefix(6).joined(separator: ",") + (ids.count > 6 ? " +\(ids.count - 6)" : "")
    }

    var coordinatorLine: String {
        let c = coordinator
        guard let leader = c.leader else {
            return "coordinator: none elected (term \(c.term)); writes wait until a majority of the \(c.voters.count) voter\(c.voters.count == 1 ? "" : "s") can talk"
        }
        var line = "coordinator \(leader) (term \(c.term)\(c.fromLeader ? "" : ", as this node last heard")) · voters \(c.voters.joined(separator: ", "))"
        if !c.nonVoters.isEmpty { line += " · \(c.nonVoters.count) non-voter\(c.nonVoters.count == 1 ? "" : "s")" }
        switch c.faultTolerance {
        case 0:
            line += "\nsurvives 0 voter failures: with \(c.voters.count) voter\(c.voters.count == 1 ? "" : "s"), losing one stops all decisions until it is back"
        case let n:
            line += " · survives \(n) voter failure\(n == 1 ? "" : "s")"
        }
        return line
    }

    static func ago(_ ms: Int64?) -> String {
        guard let ms else { return "never" }
        if ms < 1000 { return "\(ms) ms ago" }
        if ms < 120_000 { return String(format: "%.1f s ago", Double(ms) / 1000) }
        if ms < 7_200_000 { return "\(ms / 60_000) min ago" }
        return "\(ms / 3_600_000) h ago"
    }

    static func seconds(_ s: Double) -> String {
        s < 120 ? String(format: "%g s", s) : s < 7200 ? String(format: "%.0f min", s / 60) : String(format: "%.1f h", s / 3600)
    }

    static func memory(_ mb: UInt64) -> String {
        mb == 0 ? "-" : mb >= 1024 ? String(format: "%.0f GiB", Double(mb) / 1024) : "\(mb) MiB"
    }
}

/// Plain left-aligned columns.
struct Table {
    var header: [String]
    var rows: [[String]]

    var text: String {
        var widths = header.map(\.count)
        for r in rows { for (i, c) in r.enumerated() { widths[i] = max(widths[i], c.count) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, c in
                i == cells.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }
        return ([line(header)] + rows.map(line)).joined(separator: "\n")
    }
}

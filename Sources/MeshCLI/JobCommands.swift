import ArgumentParser
import Foundation
import MeshAgent
import MeshCore

/// A job as `--json` prints it.
struct JobView: Encodable {
    struct AttemptView: Encodable {
        var number: Int
        var node: String
        var term: UInt64
        var gpus: [Int]
        var assignedAt: Int64
        var startedAt: Int64?
        var endedAt: Int64?
        var outcome: String?
        var exitCode: Int32?
        var logBytes: UInt64
        /// Result paths the worker refused, with why.
        var refused: [String]
    }
    struct EventView: Encodable {
        var state: String
        var reason: String
        var at: Int64
    }
    var id: UInt64
    var name: String
    var command: [String]
    var state: String
    var reason: String
    var submittedAt: Int64
    var submitter: String
    var code: String
    var remote: String
    var commit: String
    var branch: String
    var dirty: Bool
    var bundle: String?
    var slots: Int
    var gpus: Int
    var retries: Int
    var after: [UInt64]
    var attempts: [AttemptView]
    var history: [EventView]
    var results: [ResultFileView]
    struct ResultFileView: Encodable {
        var path: String
        var size: UInt64
        var sha256: String
    }

    init(_ j: Job, names: [NodeID: String] = [:]) {
        id = j.id
        name = j.displayName
        command = j.spec.command
        state = j.state.rawValue
        reason = j.reason
        submittedAt = j.submittedAt
        submitter = j.provenance.submitter
        code = j.provenance.code.rawValue
        remote = j.provenance.remote
        commit = j.provenance.commit
        branch = j.provenance.branch
        dirty = !j.provenance.diffSummary.isEmpty
        bundle = j.provenance.bundle?.hash
        slots = j.spec.resources.slots
        gpus = j.spec.resources.gpus
        retries = j.spec.retries
        after = j.spec.after
        attempts = j.attempts.map { a in
            var code: Int32?
            if case .exited(let c)? = a.outcome { code = c }
            return AttemptView(number: a.number, node: names[a.node] ?? "\(a.node)", term: a.term, gpus: a.gpus, assignedAt: a.assignedAt,
                               startedAt: a.startedAt, endedAt: a.endedAt, outcome: a.outcome.map(describe), exitCode: code, logBytes: a.logBytes,
                               refused: a.refused)
        }
        history = j.history.map { EventView(state: $0.state.rawValue, reason: $0.reason, at: $0.at) }
        results = j.results.map { ResultFileView(path: $0.path, size: $0.size, sha256: $0.sha256) }
    }
}

func describe(_ o: AttemptOutcome) -> String {
    switch o {
    case .exited(let c): "exited \(c)"
    case .signalled(let s): "killed by signal \(s)"
    case .timedOut: "timed out"
    case .cancelled: "cancelled"
    case .lost(let why): "lost: \(why)"
    case .failedToStart(let why): "failed to start: \(why)"
    case .rejected(let why): "cannot run: \(why)"
    }
}

func clock(_ ms: Int64?) -> String {
    guard let ms, ms > 0 else { return "-" }
    let f = DateFormatter()
    f.dateFormat = "HH:mm:ss"
    return f.string(from: Date(timeIntervalSince1970: Double(ms) / 1000))
}

/// Connects to the agent the options name and runs `body`.
func withClient(_ data: DataOptions, _ remote: RemoteOptions, _ body: (MeshClient) throws -> Void) throws {
    Logging.bootstrap(nil)
    try reportingErrors {
        let client = try MeshClient(address: try remote.target(data), secret: try remote.secret(data))
        defer { client.close() }
        try body(client)
    }
}

func nodeNames(_ client: MeshClient) -> [NodeID: String] {
    guard let s = try? client.status() else { return [:] }
    return Dictionary(s.nodes.map { (NodeID($0.id), $0.name) }, uniquingKeysWith: { a, _ in a })
}

struct JobsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "jobs", abstract: "List the mesh's jobs.")

    @Option(name: .long, help: "Only jobs in this state (pending, waiting, held, assigned, running, succeeded, failed, cancelled).") var state: [String] = []
    @Option(name: .long, help: "Only jobs whose latest attempt is on this node.") var node: String?
    @Option(name: .long, help: "Only jobs whose name contains this.") var name: String?
    @Option(name: .long, help: "Only the jobs of this sweep (s12, or last-sweep).") var sweep: String?
    @Option(name: .long, help: "The latest N jobs that match (default 50).") var limit: Int = 50
    @Flag(name: .long, help: "Every job that matches, however many (fetched a page at a time).") var all = false
    @Option(name: .long, help: ArgumentHelp("Only jobs submitted within this long (e.g. 2h).", valueName: "DURATION")) var since: TimeSpan?
    @Flag(name: .long, help: "JSON.") var json = false
    @OptionGroup var data: DataOptions
    @OptionGroup var remote: RemoteOptions

    func validate() throws {
        for s in state where JobState(rawValue: s) == nil {
            throw ValidationError("unknown state '\(s)'; one of \(JobState.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        try checkBound(limit, "--limit", 1...1_000_000)
        try TimeSpan.check(since, "--since", 0.001...Double(Limits.maxTimeoutSeconds) * 100)
    }

    func run() throws {
        try withClient(data, remote) { client in
            let names = nodeNames(client)
            var query = ClusterState.JobQuery(states: Set(state.compactMap(JobState.init(rawValue:))), name: name ?? "")
            if let since { query.sinceMillis = unixMillis() - Int64(since.duration.milliseconds) }
            if let node {
                guard let id = names.first(where: { $0.value == node })?.key else { throw SubmitRefused(message: "no node named '\(node)' in the mesh") }
                query.node = id
            }
            var jobs: [Job] = []
            var more = false
            if let sweep {
                guard let id = try SweepReference.parse(sweep, data: data) else { throw ValidationError("'\(sweep)' is not a sweep (s12, or last-sweep)") }
                // (A closure, not `filter(query.matches)`: the partial application of a method of
                // a captured `var` crashed this debug build with a bad pointer.)
                let q = query
                jobs = try client.jobs(batched: try SweepReference.fetch(id, client: client).jobIDs).filter { q.matches($0) }
            } else {
                // Pages from the agent, newest first, filtered there: the latest `limit`, or all.
                while true {
                    query.limit = all ? ClusterState.JobQuery.defaultLimit : min(limit - jobs.count, ClusterState.JobQuery.defaultLimit)
                    let page = try client.jobs(query)
                    jobs += page.jobs
                    more = page.more
                    guard more, all || jobs.count < limit else { break }
                    query.before = page.nextBefore
                }
                jobs.reverse()
            }
            if json { return try printJSON(jobs.map { JobView($0, names: names) }) }
            var rows = [["ID", "NAME", "STATE", "NODE", "TRY", "START", "END", "REASON"]]
            for j in jobs {
                let a = j.current
                rows.append(["\(j.id)", String(j.displayName.prefix(30)), j.state.rawValue, a.map { names[$0.node] ?? "\($0.node)" } ?? "-",
                             a.map { "\($0.number)" } ?? "-", clock(a?.startedAt), clock(a?.endedAt), String(j.reason.prefix(50))])
            }
            printTable(rows)
            if more && !all { print("(the latest \(jobs.count); --limit N or --all for more)") }
        }
    }
}

func printTable(_ rows: [[String]]) {
    guard let first = rows.first else { return }
    let widths = (0..<first.count).map { c in rows.map { $0[c].count }.max() ?? 0 }
    for r in rows {
        print(r.enumerated().map { $0.offset == r.count - 1 ? $0.element : $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }
            .joined(separator: "  "))
    }
}

struct ShowCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Everything about one job: spec, code, every attempt, every change.")

    @Argument(help: "The job (a number or `last`), or a sweep (s12, or last-sweep: its grid of cells).") var job: String
    @Flag(name: .long, help: "JSON.") var json = false
    @Flag(name: .long, help: "Print the uncommitted changes (`git diff HEAD` at submit time) only.") var diff = false
    @OptionGroup var data: DataOptions
    @OptionGroup var remote: RemoteOptions

    func run() throws {
        if let sweep = try SweepReference.parse(job, data: data) {
            return try withClient(data, remote) { client in
                let s = try SweepReference.fetch(sweep, client: client)
                let jobs = Dictionary(uniqueKeysWithValues: try client.jobs(batched: s.jobIDs).map { ($0.id, $0) })
                try SweepGrid.show(s, jobs: jobs, names: nodeNames(client), json: json, diff: diff)
            }
        }
        let id = try JobReference.resolve(job, data: data)
        try withClient(data, remote) { client in
            guard var j = try client.jobs([id]).first else { throw SubmitRefused(message: "no job \(id)") }
            let names = nodeNames(client)
            // A sweep's jobs share its code; the diff is kept once, on the sweep.
            if j.spec.sweep != 0, j.provenance.diffSummary.isEmpty, let s = try? SweepReference.fetch(j.spec.sweep, client: client) {
                j.provenance.diffSummary = s.provenance.diffSummary
            }
            if diff { return print(j.provenance.diffSummary, terminator: "") }
            if json { return try printJSON(JobView(j, names: names)) }
            print("job \(j.id): \(j.displayName)")
            print("  state      \(j.state.rawValue)\(j.reason.isEmpty ? "" : " (\(j.reason))")")
            print("  command    \(j.spec.command.joined(separator: " "))")
            print("  submitted  \(clock(j.submittedAt)) by \(j.provenance.submitter) via \(names[j.submittedVia] ?? "\(j.submittedVia)")")
            let p = j.provenance
            switch p.code {
            case .git: print("  code       git \(p.remote.isEmpty ? p.directory : p.remote) \(p.commit.prefix(12)) (\(p.branch))\(p.diffSummary.isEmpty ? "" : ", uncommitted changes:")")
            case .directory: print("  code       directory \(p.directory)")
            case .none: print("  code       none")
            }
            if !p.diffSummary.isEmpty {
                let files = p.diffSummary.split(separator: "\n").filter { $0.hasPrefix("diff --git ") }.map { $0.split(separator: " ").last.map { String($0.dropFirst(2)) } ?? "" }
                print("             \(files.joined(separator: ", ")) (mesh show \(j.id) --diff)")
            }
            if let b = p.bundle { print("  bundle     \(b.hash.prefix(16)) \(ByteCount(b.size)) on \(b.holders.map { names[$0] ?? "\($0)" }.joined(separator: ", "))") }
            print("  resources  \(j.spec.resources.slots) slot(s), \(j.spec.resources.gpus) GPU(s)\(j.spec.nodeClass.isEmpty ? "" : ", class \(j.spec.nodeClass)"), retries \(j.spec.retries)\(j.spec.timeoutSeconds > 0 ? ", timeout \(j.spec.timeoutSeconds) s" : "")")
            if !j.spec.after.isEmpty { print("  after      \(j.spec.after.map(String.init).joined(separator: ", "))") }
            if j.spec.sweep != 0 { print("  sweep      \(Sweep.label(j.spec.sweep)), stage \(j.spec.stage)") }
            if !j.spec.parameters.isEmpty { print("  values     " + j.spec.parameters.map { "\($0.name)=\($0.value)" }.joined(separator: " ")) }
            for a in j.attempts {
                print("  attempt \(a.number) on \(names[a.node] ?? "\(a.node)") (term \(a.term)): assigned \(clock(a.assignedAt)), started \(clock(a.startedAt)), ended \(clock(a.endedAt))\(a.outcome.map { ": " + describe($0) } ?? ""), log \(ByteCount(a.logBytes))")
                for r in a.refused { print("    refused: \(r)") }
            }
            if !j.results.isEmpty {
                print("  results")
                for r in j.results { print("    \(r.path)  \(ByteCount(r.size))  \(r.sha256.prefix(16))") }
            }
            print("  history")
            for e in j.history { print("    \(clock(e.at))  \(e.state.rawValue)\(e.reason.isEmpty ? "" : ": \(e.reason)")") }
        }
    }
}

struct LogsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "logs", abstract: "A job's output (stdout and stderr), from whichever node holds it.")

    @Argument(help: "The job (a number or `last`).") var job: String
    @Option(name: .long, help: "Which attempt (default: the latest).") var attempt: Int = 0
    @Flag(name: .shortAndLong, help: "Keep printing as it grows, until the attempt ends.") var follow = false
    @OptionGroup var data: DataOptions
    @OptionGroup var remote: RemoteOptions

    func validate() throws {
        try checkBound(attempt, "--attempt", 0...Int(UInt32.max))
    }

    func run() throws {
        let id = try JobReference.resolve(job, data: data)
        try withClient(data, remote) { client in try Self.stream(client: client, job: id, attempt: attempt, follow: follow) }
    }

    static func stream(client: MeshClient, job: JobID, attempt: Int, follow: Bool) throws {
        var offset: UInt64 = 0
        var which = attempt
        while true {
            let chunk = try client.log(job: job, attempt: which, offset: offset)
            if which == 0, chunk.attempt > 0 { which = chunk.attempt }
            if !chunk.data.isEmpty {
                FileHandle.standardOutput.write(Data(chunk.data))
                offset += UInt64(chunk.data.count)
                continue
            }
            if chunk.complete || !follow { return }
            usleep(200_000)
        }
    }
}

/// cancel, retry, hold, release: one write for many jobs; a sweep stands for those of its jobs
/// that `pick` chooses.
struct JobsChangeCommand {
    static func run(_ jobs: [String], data: DataOptions, remote: RemoteOptions, pick: @escaping (Job) -> Bool = { _ in true },
                    _ command: ([JobID]) -> ClusterState.Command) throws {
        var ids: [JobID] = []
        var sweeps: [SweepID] = []
        for text in jobs {
            if let s = try SweepReference.parse(text, data: data) { sweeps.append(s) } else { ids.append(try JobReference.resolve(text, data: data)) }
        }
        if !sweeps.isEmpty {
            try withClient(data, remote) { client in
                for s in sweeps {
                    let picked = try client.jobs(batched: try SweepReference.fetch(s, client: client).jobIDs).filter(pick).map(\.id)
                    if picked.isEmpty { FileHandleWriter.stderr("sweep \(Sweep.label(s)): no job to change\n") }
                    ids += picked
                }
            }
            if ids.isEmpty { return }
        }
        try runWrite(command(ids), data: data, remote: remote)
    }
}

struct CancelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cancel", abstract: "Cancel jobs (a running one gets SIGTERM, then SIGKILL), or every unfinished job of a sweep.")
    @Argument(help: "Jobs or sweeps (s12).") var jobs: [String]
    @Option(name: .long, help: "Why.") var reason: String = ""
    @OptionGroup var data: DataOptions
    @OptionGroup var remote: RemoteOptions
    func run() throws {
        try JobsChangeCommand.run(jobs, data: data, remote: remote, pick: { !$0.state.isTerminal }) { .cancel($0, reason: reason.isEmpty ? "by \(ProcessInfo.processInfo.environment["USER"] ?? "the user")" : reason, at: unixMillis()) }
    }
}

struct RetryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retry",
        abstract: "Run failed or cancelled jobs again (a new attempt); for a sweep, those of its jobs (their dependents come back with them).")
    @Argument(help: "Jobs or sweeps (s12).") var jobs: [String]
    @Flag(name: .long, help: "Of a sweep, only the jobs that failed (not those cancelled).") var failed = false
    @OptionGroup var data: DataOptions
    @OptionGroup var remote: RemoteOptions
    func run() throws {
        let onlyFailed = failed
        // Jobs that failed only because a dependency did come back when that one is retried.
        try JobsChangeCommand.run(jobs, data: data, remote: remote, pick: { j in
            (j.state == .failed && !j.dependencyFailed) || (!onlyFailed && j.state == .cancelled)
        }) { .retry($0, at: unixMillis()) }
    }
}

struct HoldCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "hold", abstract: "Keep waiting jobs from starting until released.")
    @Argument(help: "Jobs.") var jobs: [String]
    @OptionGroup var data: DataOptions
    @OptionGroup var remote: RemoteOptions
    func run() throws { try JobsChangeCommand.run(jobs, data: data, remote: remote) { .hold($0, at: unixMillis()) } }
}

struct ReleaseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "release", abstract: "Let held jobs start.")
    @Argument(help: "Jobs.") var jobs: [String]
    @OptionGroup var data: DataOptions
    @OptionGroup var remote: RemoteOptions
    func run() throws { try JobsChangeCommand.run(jobs, data: data, remote: remote) { .release($0, at: unixMillis()) } }
}

struct ResultsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "results", abstract: "Copy a job's result files here (from any node that holds them); hashes are checked.")
    @Argument(help: "The job (a number or `last`), or a sweep (s12: one folder per job).") var job: String
    @Argument(help: "Where to put them (default: ./results/JOB or ./results/SWEEP).") var destination: String?
    @OptionGroup var data: DataOptions
    @OptionGroup var remote: RemoteOptions

    func run() throws {
        if let sweep = try SweepReference.parse(job, data: data) {
            return try withClient(data, remote) { client in
                let s = try SweepReference.fetch(sweep, client: client)
                let root = destination ?? "results/\(Sweep.label(sweep))"
                var copied = 0
                var missing: [String] = []
                for j in try client.jobs(batched: s.jobIDs) {
                    guard j.resultsBundle != nil else {
                        missing.append("\(j.id) (\(j.state.rawValue))")
                        continue
                    }
                    let written = try Self.fetch(j, into: root + "/" + SweepExport.folder(j), client: client)
                    print("\(written.count) file\(written.count == 1 ? "" : "s") of job \(j.id) in \(root)/\(SweepExport.folder(j))")
                    copied += 1
                }
                print("results of \(copied) of \(s.jobIDs.count) jobs of \(Sweep.label(sweep)) in \(root)" + (missing.isEmpty ? "" : "; none yet from " + missing.prefix(10).joined(separator: ", ") + (missing.count > 10 ? ", …" : "")))
            }
        }
        let id = try JobReference.resolve(job, data: data)
        try withClient(data, remote) { client in
            guard let j = try client.jobs([id]).first else { throw SubmitRefused(message: "no job \(id)") }
            guard j.resultsBundle != nil else {
                throw SubmitRefused(message: j.state.isTerminal ? "job \(id) left no results" : "job \(id) is \(j.state.rawValue): results come when it ends")
            }
            let dest = destination ?? "results/\(id)"
            let written = try Self.fetch(j, into: dest, client: client)
            print("\(written.count) file\(written.count == 1 ? "" : "s") of job \(id) in \(dest)")
            for w in written { print("  \(w)") }
        }
    }

    /// Copies a job's results into `dest` and checks their hashes.
    static func fetch(_ j: Job, into dest: String, client: MeshClient) throws -> [String] {
        guard let bundle = j.resultsBundle else { return [] }
        try FileManager.default.createDirectory(atPath: dest, withIntermediateDirectories: true)
        let tmp = NSTemporaryDirectory() + "mesh-results-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        defer { unlink(tmp) }
        try client.getBlob(bundle.hash, holders: bundle.holders, to: tmp)
        let written = try Archive.unpack(tmp, into: dest, skip: [".mesh"])
        for r in j.results where written.contains(r.path) {
            let h = try SHA256Hasher.file(dest + "/" + r.path)
            guard h.hash == r.sha256 else { throw SubmitRefused(message: "\(r.path) of job \(j.id) does not match its recorded hash") }
        }
        return written
    }
}

/// `mesh supervise DIR` (hidden): the process that watches one attempt.
struct SuperviseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "supervise", abstract: "Supervise one attempt (started by the agent).", shouldDisplay: false)
    @Argument var directory: String
    func run() throws {
        throw ExitCode(Supervisor.run(directory: directory))
    }
}

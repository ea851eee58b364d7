import ArgumentParser
import Foundation
import MeshAgent
import MeshCore
import MeshPlan

/// `mesh plan FILE.yaml`
struct PlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Submit a plan: a sweep of jobs in stages, from a YAML file.",
        discussion: """
            The file has `script:` (the command, with {name} for values, shell-quoted when substituted), \
            `sweep:` (values; a list is an axis of the Cartesian product; a list of mappings one axis with \
            fields {axis.field}; values may refer to other values) and optionally `stages:` (each with a \
            `name`, run for every combination in order; `$(stage.key)` is that stage's value for the same \
            combination and makes the job wait for it). class, gpus, slots, timeout, retries and results \
            may be set for the sweep or a stage. Jobs get their values as MESH_PARAM_<NAME>.

            Re-submitting a plan (or --resume) runs only the cells that have not succeeded: identical \
            jobs (same command, values, resources, code and dependencies) are reused.
            """
    )

    @Argument(help: "The plan (YAML).") var file: String
    @Flag(name: .long, help: "Print every job, its values, command and dependencies; submit nothing.") var dryRun = false
    @Flag(name: .long, help: "Resume an earlier submission of this plan: refused if none of its jobs exists yet (its code, values or resources changed).") var resume = false
    @Flag(name: .long, help: "Run every cell again, even those that succeeded before.") var fresh = false
    @Option(name: .long, help: "Refuse a plan of more jobs than this (the mesh's own limit, max_plan_jobs, applies too; a dry run uses it or 10000).") var maxJobs: Int?
    @Option(name: .long, help: ArgumentHelp("Pack this directory instead of the git checkout.", valueName: "DIR")) var code: String?
    @Flag(name: .long, help: "Send no code: jobs run in an empty workspace.") var noCode = false
    @Flag(name: .long, help: "Submit every job held (mesh release).") var hold = false
    @Option(name: .long, help: "Higher runs first.") var priority: Int = 0
    @Flag(name: .long, help: "Wait until every job has ended; exit 0 if all succeeded.") var wait = false
    @Flag(name: .long, help: "Print the sweep as JSON.") var json = false
    @Option(name: .long, help: ArgumentHelp("Largest code bundle to send, in MiB.", valueName: "MiB")) var maxBundle: UInt64 = 256
    @OptionGroup var data: DataOptions
    @OptionGroup var remote: RemoteOptions

    func validate() throws {
        if resume && fresh { throw ValidationError("--resume and --fresh cannot go together") }
        if code != nil && noCode { throw ValidationError("--code and --no-code cannot go together") }
        try checkBound(maxJobs, "--max-jobs", 1...Limits.maxPlanJobs)
        try checkBound(priority, "--priority", Int(Int32.min)...Int(Int32.max))
        try checkBound(maxBundle, "--max-bundle", 1...65_536)
    }

    func run() throws {
        Logging.bootstrap(nil)
        try reportingErrors {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw SubmitRefused(message: "cannot read \(file) (is it a UTF-8 text file?)")
            }
            let plan: Plan
            do {
                plan = try Plan.parse(yaml: text)
            } catch {
                throw SubmitRefused(message: "\(file): \(error)")
            }
            let submission = SweepSubmission(
                plan: plan, name: (file as NSString).lastPathComponent,
                base: JobSpec(command: ["true"], priority: priority, held: hold), reuse: !fresh, resume: resume, maxJobs: maxJobs)
            guard let sweep = try submission.run(code: CodeSource(directory: code, none: noCode), dryRun: dryRun, remote: remote, data: data,
                                                 maxBundle: maxBundle, json: json) else { return }
            if wait {
                let client = try MeshClient(address: try remote.target(data), secret: try remote.secret(data))
                defer { client.close() }
                throw ExitCode(try SweepReference.wait(sweep, client: client))
            }
        }
    }
}

/// `mesh sweeps`
struct SweepsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "sweeps", abstract: "Every sweep: its id, plan, and how many of its jobs are in each state.")
    @Flag(name: .long, help: "JSON.") var json = false
    @OptionGroup var data: DataOptions
    @OptionGroup var remote: RemoteOptions

    struct Row: Encodable {
        var id: String
        var name: String
        var status: String
        var submitter: String
        var cells: Int
        var created: Int
        var states: [String: Int]
    }

    func run() throws {
        try withClient(data, remote) { client in
            let rows = try client.sweeps().map { s, states in
                Row(id: Sweep.label(s.id), name: s.name, status: s.status.rawValue, submitter: s.submitter, cells: s.total, created: s.created, states: states)
            }
            if json { return try printJSON(rows) }
            var table = [["SWEEP", "NAME", "STATUS", "CELLS", "NEW", "JOBS"]]
            for r in rows {
                table.append([r.id, String(r.name.prefix(30)), r.status, "\(r.cells)", "\(r.created)",
                              r.states.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")])
            }
            printTable(table)
        }
    }
}

/// What `mesh show SWEEP` prints: the grid of cells (combinations × stages) with their states.
enum SweepGrid {
    static func show(_ sweep: Sweep, jobs: [JobID: Job], names: [NodeID: String], json: Bool, diff: Bool) throws {
        if diff { return print(sweep.provenance.diffSummary, terminator: "") }
        if json { return try printJSON(SweepExport.rows(sweep, jobs: jobs, names: names, metrics: [:])) }
        let p = sweep.provenance
        print("sweep \(Sweep.label(sweep.id)): \(sweep.name)")
        print("  status     \(sweep.status.rawValue)\(sweep.reason.isEmpty ? "" : " (\(sweep.reason))")")
        print("  submitted  \(clock(sweep.createdAt)) by \(sweep.submitter)")
        switch p.code {
        case .git: print("  code       git \(p.remote.isEmpty ? p.directory : p.remote) \(p.commit.prefix(12)) (\(p.branch))\(p.diffSummary.isEmpty ? "" : ", uncommitted changes (mesh show \(Sweep.label(sweep.id)) --diff)")")
        case .directory: print("  code       directory \(p.directory)")
        case .none: print("  code       none")
        }
        var counts: [String: Int] = [:]
        for id in sweep.jobIDs { counts[jobs[id]?.state.rawValue ?? "missing", default: 0] += 1 }
        print("  jobs       \(sweep.jobIDs.count) (\(sweep.created) new, \(sweep.jobIDs.count - sweep.created) reused): "
              + counts.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", "))
        guard !sweep.cells.isEmpty else { return }
        var rows: [Int: [String: SweepCell]] = [:]
        var labels: [Int: [String]] = [:]
        for c in sweep.cells {
            rows[c.combination, default: [:]][c.stage] = c
            labels[c.combination] = c.labels
        }
        var table = [sweep.axes.map { $0.uppercased() } + sweep.stages.map { $0.uppercased() }]
        for combination in rows.keys.sorted() {
            let cells = rows[combination]!
            table.append((labels[combination] ?? []) + sweep.stages.map { stage in
                guard let c = cells[stage], let j = jobs[c.job] else { return "-" }
                return "\(j.id) \(j.state.rawValue)"
            })
        }
        print("")
        printTable(table)
        let failed = sweep.jobIDs.compactMap { jobs[$0] }.filter { $0.state == .failed }
        if !failed.isEmpty {
            print("")
            for j in failed.prefix(20) { print("  job \(j.id) failed: \(j.reason)") }
            if failed.count > 20 { print("  … and \(failed.count - 20) more (mesh jobs --sweep \(Sweep.label(sweep.id)) --state failed)") }
        }
    }
}

/// `mesh export SWEEP --csv|--json`
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "A sweep as a table: one row per job with its values, stage, state, node, times, exit code, results and metrics.json keys.")
    @Argument(help: "The sweep (s12, or last-sweep).") var sweep: String
    @Flag(name: .long, help: "CSV (the default).") var csv = false
    @Flag(name: .long, help: "JSON.") var json = false
    @Flag(name: .long, help: "Do not fetch metrics.json from the results.") var noMetrics = false
    @OptionGroup var data: DataOptions
    @OptionGroup var remote: RemoteOptions

    func validate() throws {
        if csv && json { throw ValidationError("--csv or --json, not both") }
    }

    func run() throws {
        guard let id = try SweepReference.parse(sweep, data: data) else { throw ValidationError("'\(sweep)' is not a sweep (s12, or last-sweep)") }
        try withClient(data, remote) { client in
            let s = try SweepReference.fetch(id, client: client)
            let jobs = Dictionary(uniqueKeysWithValues: try client.jobs(batched: s.jobIDs).map { ($0.id, $0) })
            let metrics = noMetrics ? [:] : SweepExport.metrics(jobs.values.sorted { $0.id < $1.id }, client: client)
            let rows = SweepExport.rows(s, jobs: jobs, names: nodeNames(client), metrics: metrics)
            if json { return try printJSON(rows) }
            print(SweepExport.csv(rows), terminator: "")
        }
    }
}

/// One row per job of a sweep, for export.
enum SweepExport {
    struct Row: Encodable {
        enum CodingKeys: String, CodingKey {
            case job, sweep, stage, combination, parameters, state, reason, node, attempts, exitCode, start, end, durationSeconds, results, metrics
        }
        var job: JobID
        var sweep: String
        var stage: String
        var combination: Int
        var parameters: [String: String]
        /// The plan's order of the parameters (for CSV columns).
        var parameterOrder: [String]
        var state: String
        var reason: String
        var node: String
        var attempts: Int
        var exitCode: Int32?
        var start: Int64?
        var end: Int64?
        var durationSeconds: Double?
        var results: String
        var metrics: [String: String]
    }

    /// Where `mesh results SWEEP DEST` puts a cell's files, under DEST.
    static func folder(_ job: Job) -> String {
        let raw = "\(job.id)-" + (job.spec.name.isEmpty ? job.spec.stage : job.spec.name)
        return String(raw.map { $0.isLetter || $0.isNumber || "._=,-".contains($0) ? $0 : "_" }.prefix(120))
    }

    static func rows(_ s: Sweep, jobs: [JobID: Job], names: [NodeID: String], metrics: [JobID: [String: String]]) -> [Row] {
        var firstCell: [JobID: SweepCell] = [:]
        for c in s.cells where firstCell[c.job] == nil { firstCell[c.job] = c }
        return s.jobIDs.compactMap { id in
            guard let j = jobs[id], let cell = firstCell[id] else { return nil }
            let a = j.attempts.last
            var code: Int32?
            if case .exited(let c)? = a?.outcome { code = c }
            let duration = a.flatMap { a in a.startedAt.flatMap { s in a.endedAt.map { Double($0 - s) / 1000 } } }
            return Row(job: id, sweep: Sweep.label(s.id), stage: j.spec.stage, combination: cell.combination,
                       parameters: Dictionary(j.spec.parameters.map { ($0.name, $0.value) }, uniquingKeysWith: { $1 }),
                       parameterOrder: j.spec.parameters.map(\.name),
                       state: j.state.rawValue, reason: j.reason, node: a.map { names[$0.node] ?? "\($0.node)" } ?? "",
                       attempts: j.attempts.count, exitCode: code, start: a?.startedAt, end: a?.endedAt, durationSeconds: duration,
                       results: j.resultsBundle == nil ? "" : "results/\(Sweep.label(s.id))/\(folder(j))", metrics: metrics[id] ?? [:])
        }
    }

    static func csv(_ rows: [Row]) -> String {
        var parameterNames: [String] = []
        var metricNames: Set<String> = []
        for r in rows {
            for name in r.parameterOrder where !parameterNames.contains(name) { parameterNames.append(name) }
            metricNames.formUnion(r.metrics.keys)
        }
        let metrics = metricNames.sorted()
        var out = (["job", "sweep", "stage", "combination"] + parameterNames + ["state", "reason", "node", "attempts", "exit_code", "start", "end", "duration_s", "results"]
                   + metrics.map { "metrics.\($0)" }).map(field).joined(separator: ",") + "\n"
        for r in rows {
            var fields = ["\(r.job)", r.sweep, r.stage, "\(r.combination)"]
            fields += parameterNames.map { r.parameters[$0] ?? "" }
            fields += [r.state, r.reason, r.node, "\(r.attempts)", r.exitCode.map(String.init) ?? "", iso(r.start), iso(r.end),
                       r.durationSeconds.map { String(format: "%.3f", $0) } ?? "", r.results]
            fields += metrics.map { r.metrics[$0] ?? "" }
            out += fields.map(field).joined(separator: ",") + "\n"
        }
        return out
    }

    private static func field(_ s: String) -> String {
        s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
    }

    private static func iso(_ ms: Int64?) -> String {
        guard let ms else { return "" }
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: Date(timeIntervalSince1970: Double(ms) / 1000))
    }

    /// The top-level keys of each job's metrics.json (nested ones as a.b), from its results.
    static func metrics(_ jobs: [Job], client: MeshClient) -> [JobID: [String: String]] {
        var out: [JobID: [String: String]] = [:]
        for j in jobs {
            guard let bundle = j.resultsBundle, let file = j.results.first(where: { $0.path == "metrics.json" || $0.path.hasSuffix("/metrics.json") }),
                  file.size <= 16 << 20 else { continue }
            let tmp = NSTemporaryDirectory() + "mesh-metrics-\(getpid())-\(j.id)"
            defer { try? FileManager.default.removeItem(atPath: tmp) }
            do {
                try client.getBlob(bundle.hash, holders: bundle.holders, to: tmp + ".archive")
                defer { unlink(tmp + ".archive") }
                try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
                _ = try Archive.unpack(tmp + ".archive", into: tmp, skip: [".mesh"])
                let data = try Data(contentsOf: URL(fileURLWithPath: tmp + "/" + file.path))
                guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else { continue }
                var flat: [String: String] = [:]
                flatten(object, prefix: "", into: &flat)
                out[j.id] = flat
            } catch {
                FileHandleWriter.stderr("job \(j.id): cannot read its metrics.json: \(error)\n")
            }
        }
        return out
    }

    private static func flatten(_ object: [String: Any], prefix: String, into out: inout [String: String]) {
        for (k, v) in object {
            let key = prefix + k
            switch v {
            case let d as [String: Any]: flatten(d, prefix: key + ".", into: &out)
            case let n as NSNumber: out[key] = n.stringValue
            case let s as String: out[key] = s
            case is NSNull: out[key] = ""
            default:
                if let data = try? JSONSerialization.data(withJSONObject: v, options: [.sortedKeys]) { out[key] = String(decoding: data, as: UTF8.self) }
            }
        }
    }
}

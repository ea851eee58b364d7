import ArgumentParser
import Foundation
import MeshAgent
import MeshCore
import MeshPlan

/// A plan or matrix on its way to the mesh: expanded here, identified, sent in chunks; the mesh
/// creates every job when the last chunk arrives (DESIGN.md §7).
struct SweepSubmission {
    var plan: Plan
    /// The plan file, or the matrix command.
    var name: String
    /// What every job shares (environment, labels, priority, lease, hold, --after, workdir) and
    /// the resources a plan does not set.
    var base: JobSpec
    /// Reuse identical jobs of earlier sweeps (re-submitting runs only what has not succeeded).
    var reuse: Bool
    /// `--resume`: the mesh refuses the plan if none of its jobs exists yet.
    var resume = false
    /// `--max-jobs`, if given; the mesh's `max_plan_jobs` applies too.
    var maxJobs: Int?

    /// About this many bytes of jobs per log entry.
    static let chunkBytes = 1 << 20

    /// Expands the plan, refusing it before expansion if it makes more jobs than `--max-jobs` or
    /// the mesh's `max_plan_jobs` (nil: not known, as in a dry run without a mesh).
    func expand(meshLimit: Int?) throws -> [ExpandedJob] {
        let meshLimit = meshLimit ?? ClusterState.defaultMaxPlanJobs
        let limit = min(maxJobs ?? .max, meshLimit)
        do {
            return try plan.expand(limit: limit)
        } catch let error where plan.cellCount > limit {
            let raise = limit == maxJobs ? "raise --max-jobs" : "raise the mesh's limit with `mesh set max_plan_jobs \(plan.cellCount)`"
            throw SubmitRefused(message: "\(name): \(error); nothing submitted: cut an axis, or \(raise)")
        } catch {
            throw SubmitRefused(message: "\(name): \(error)")
        }
    }

    /// The jobs as the mesh gets them, with identities (which include the code bundle's hash).
    func planned(_ cells: [ExpandedJob], bundle: String) -> [PlannedJob] {
        let shared = sharedBasis
        var identities: [String] = []
        identities.reserveCapacity(cells.count)
        var out: [PlannedJob] = []
        out.reserveCapacity(cells.count)
        let stageCount = plan.stages.count
        for cell in cells {
            let dependencies = cell.dependsOn.map { identities[$0] }
            let identity = SHA256Hasher.text(cell.identityBasis(bundle: bundle, dependencies: dependencies) + shared)
            identities.append(identity)
            var spec = base
            spec.name = Self.jobName(cell, stages: stageCount)
            spec.command = cell.command
            spec.env.merge(cell.environment) { $1 }
            spec.resources.slots = cell.resources.slots ?? base.resources.slots
            spec.resources.gpus = cell.resources.gpus ?? base.resources.gpus
            spec.nodeClass = cell.resources.nodeClass ?? base.nodeClass
            spec.timeoutSeconds = cell.resources.timeoutSeconds ?? base.timeoutSeconds
            spec.retries = cell.resources.retries ?? base.retries
            spec.results = cell.resources.results ?? base.results
            spec.stage = cell.stage
            spec.parameters = cell.parameters
            out.append(PlannedJob(spec: spec, identity: identity, dependsOn: dependencies, combination: cell.combination, labels: cell.labels))
        }
        return out
    }

    /// What the base spec adds to every identity (what changes how a job runs, not when).
    private var sharedBasis: String {
        var out = "|base"
        for (k, v) in base.env.sorted(by: { $0.key < $1.key }) { out += "|e\(k.utf8.count):\(k)=\(v.utf8.count):\(v)" }
        for (k, v) in base.labels.sorted(by: { $0.key < $1.key }) { out += "|l\(k.utf8.count):\(k)=\(v.utf8.count):\(v)" }
        out += "|cpus\(base.resources.cpus)|mem\(base.resources.memoryMB)|wd\(base.workdir.utf8.count):\(base.workdir)"
        for a in base.after.sorted() { out += "|a\(a)" }
        return out
    }

    static func jobName(_ cell: ExpandedJob, stages: Int) -> String {
        let labels = cell.labels.joined(separator: " ")
        if stages == 1 { return labels.isEmpty ? cell.stage : labels }
        return labels.isEmpty ? cell.stage : "\(cell.stage) \(labels)"
    }

    /// Sends the jobs; returns the sweep and the mesh's message.
    func send(_ jobs: [PlannedJob], provenance: Provenance, client: MeshClient) throws -> (SweepID, String) {
        var sweep: SweepID = 0
        var start = 0
        var message = ""
        repeat {
            var end = start
            var bytes = 0
            while end < jobs.count, end == start || (bytes < Self.chunkBytes && end - start < 5000) {
                bytes += jobs[end].approximateSize
                end += 1
            }
            let chunk = PlanChunk(sweep: sweep, name: name, axes: plan.axes.map(\.name), stages: plan.stages.map(\.name), total: jobs.count,
                                  reuse: reuse, provenance: sweep == 0 ? provenance : Provenance(), jobs: Array(jobs[start..<end]),
                                  final: end >= jobs.count, resume: resume)
            let (outcome, _) = try client.write(.plan(chunk), timeout: .seconds(60))
            guard case .created(let ids, let m) = outcome, let id = ids.first else {
                throw SubmitRefused(message: outcome.message)
            }
            sweep = id
            message = m
            start = end
        } while start < jobs.count
        return (sweep, message)
    }

    /// What `--dry-run` prints: every job, its parameters, its command and its dependencies.
    static func printDryRun(_ cells: [ExpandedJob], planned: [PlannedJob], name: String) {
        let distinct = Set(planned.map(\.identity)).count
        print("\(name): \(cells.count) job\(cells.count == 1 ? "" : "s")\(distinct < cells.count ? " (\(distinct) distinct: identical ones are submitted once)" : ""); nothing submitted")
        for (i, cell) in cells.enumerated() {
            let after = cell.dependsOn.isEmpty ? "" : "  after " + cell.dependsOn.map { "#\($0 + 1)" }.joined(separator: ", ")
            print("#\(i + 1)  \(cell.stage)  [\(cell.labels.joined(separator: ", "))]\(after)")
            print("    " + cell.parameters.map { "\($0.name)=\($0.value)" }.joined(separator: " "))
            let command = cell.command.count == 3 && cell.command[0] == "/bin/sh" && cell.command[1] == "-c"
                ? cell.command[2].trimmingCharacters(in: .newlines) : cell.command.map { Self.display($0) }.joined(separator: " ")
            for line in command.split(separator: "\n", omittingEmptySubsequences: false) { print("    $ \(line)") }
        }
    }

    private static func display(_ arg: String) -> String {
        arg.isEmpty || arg.contains(where: { " \t\n'\"\\$`;&|<>()*?[]{}".contains($0) }) ? "'" + arg.replacingOccurrences(of: "'", with: "'\\''") + "'" : arg
    }

    /// The whole submission: expand, (dry run: print), pack and store the code, send.
    func run(code: CodeSource, dryRun: Bool, remote: RemoteOptions, data: DataOptions, maxBundle: UInt64, json: Bool) throws -> SweepID? {
        if dryRun {
            let cells = try expand(meshLimit: nil)
            let snapshot = try code.snapshot()
            Self.printDryRun(cells, planned: planned(cells, bundle: ""), name: name)
            if let s = snapshot { print("code: \(s.provenance.code.rawValue) \(s.provenance.directory), \(s.entries.count) files, runs in ./\(s.workdir)") }
            return nil
        }
        let client = try MeshClient(address: try remote.target(data), secret: try remote.secret(data))
        defer { client.close() }
        let cells = try expand(meshLimit: try client.status(local: true).settings["max_plan_jobs"].flatMap(Int.init))
        let snapshot = try code.snapshot()
        var submission = self
        submission.base.workdir = snapshot?.workdir ?? ""
        var provenance = snapshot?.provenance ?? Provenance()
        provenance.submitter = CodeUpload.submitter()
        if let snapshot { provenance.bundle = try CodeUpload.bundle(snapshot, client: client, maxBundle: maxBundle) }
        let jobs = submission.planned(cells, bundle: provenance.bundle?.hash ?? "")
        let (sweep, message) = try submission.send(jobs, provenance: provenance, client: client)
        SweepReference.remember(sweep, data: data)
        if json {
            try printJSON(["sweep": Sweep.label(sweep), "message": message])
        } else {
            print("submitted \(message) (mesh show \(Sweep.label(sweep)))")
        }
        fflush(nil)
        return sweep
    }
}

/// Where a submission's code comes from.
struct CodeSource {
    var directory: String?
    var none: Bool

    func snapshot() throws -> CodeSnapshot? {
        none ? nil : try CodeSnapshot.take(from: directory ?? FileManager.default.currentDirectoryPath, plainDirectory: directory != nil)
    }
}

/// A sweep on the command line: `s12`, or `last-sweep` (the last one submitted from this machine).
enum SweepReference {
    static func file(_ data: DataOptions) -> String { data.directory.path + "/last-sweep" }

    static func parse(_ text: String, data: DataOptions) throws -> SweepID? {
        if text == "last-sweep" {
            guard let s = try? String(contentsOfFile: file(data), encoding: .utf8), let id = Sweep.parse(s.trimmingCharacters(in: .whitespacesAndNewlines)) else {
                throw ValidationError("no sweep has been submitted from this machine yet (no \(file(data)))")
            }
            return id
        }
        return Sweep.parse(text)
    }

    static func remember(_ id: SweepID, data: DataOptions) {
        try? FileManager.default.createDirectory(atPath: data.directory.path, withIntermediateDirectories: true)
        try? "\(Sweep.label(id))\n".write(toFile: file(data), atomically: true, encoding: .utf8)
    }

    static func fetch(_ id: SweepID, client: MeshClient) throws -> Sweep {
        guard let s = try client.sweeps([id]).first?.sweep else { throw SubmitRefused(message: "no sweep \(Sweep.label(id)) (mesh sweeps lists them)") }
        return s
    }

    /// Polls until every job of the sweep has ended; 0 if all succeeded.
    static func wait(_ id: SweepID, client: MeshClient) throws -> Int32 {
        var last = ""
        while true {
            if let s = try? client.sweeps().first(where: { $0.sweep.id == id }) {
                let line = s.states.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
                if line != last { FileHandleWriter.stderr("sweep \(Sweep.label(id)): \(line)\n") }
                last = line
                if s.sweep.status == .abandoned { return 1 }
                let open = s.states.filter { JobState(rawValue: $0.key).map { !$0.isTerminal } ?? true }.values.reduce(0, +)
                if s.sweep.status == .submitted && open == 0 { return s.states.keys.allSatisfy { $0 == JobState.succeeded.rawValue } ? 0 : 1 }
            }
            usleep(250_000)
        }
    }
}

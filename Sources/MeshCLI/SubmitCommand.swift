import ArgumentParser
import Foundation
import MeshAgent
import MeshCore
import MeshPlan

/// `mesh submit [options] -- CMD…`
struct SubmitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "submit",
        abstract: "Run an experiment on an idle node of the mesh, on the code of this checkout.",
        discussion: """
            In a git checkout, the tracked and untracked-but-not-ignored files are packed into a bundle \
            (remote, commit and `git diff --stat HEAD` are recorded) that is stored on two live nodes before \
            the job is acknowledged; the command runs in the same subdirectory of the workspace. The job sees \
            MESH_JOB_ID, MESH_ATTEMPT, MESH_NODE and CUDA_VISIBLE_DEVICES. Lines `RESULTS: PATH` on its output \
            and --results globs name result files, which are kept on the worker and copied to this agent.

            Exit codes: 0 submitted (with --wait: the job's own exit code, 1 if it failed otherwise), 1 refused, \
            64 usage, 69 mesh unreachable, 75 no coordinator in time.
            """
    )

    @Option(name: .long, help: "A name for the job (default: the command).") var name: String?
    @Option(name: .customLong("class"), help: "Run only on nodes of this class.") var nodeClass: String = ""
    @Option(name: .long, help: ArgumentHelp("Run only on nodes with this label (repeatable).", valueName: "K=V")) var label: [String] = []
    @Option(name: .long, help: "Slots the job takes on its node.") var slots: Int = 1
    @Option(name: .long, help: "GPUs (given to it in CUDA_VISIBLE_DEVICES).") var gpus: Int = 0
    @Option(name: .long, help: "CPUs the node must have.") var cpus: Int = 0
    @Option(name: .long, help: ArgumentHelp("Memory the node must have, in MiB or with G/M.", valueName: "SIZE")) var mem: String?
    @Option(name: .long, help: ArgumentHelp("An environment variable for the job (repeatable).", valueName: "K=V")) var env: [String] = []
    @Option(name: .long, help: ArgumentHelp("Stop it after this long (SIGTERM, then SIGKILL).", valueName: "DURATION")) var timeout: TimeSpan?
    @Option(name: .long, help: "Run a failed attempt again up to N times.") var retries: Int = 0
    @Option(name: .long, help: "Higher runs first.") var priority: Int = 0
    @Option(name: .long, help: ArgumentHelp("Result files (a glob relative to where it runs; repeatable).", valueName: "GLOB")) var results: [String] = []
    @Option(name: .long, help: ArgumentHelp("Pack this directory instead of the git checkout.", valueName: "DIR")) var code: String?
    @Flag(name: .long, help: "Send no code: the job runs in an empty workspace.") var noCode = false
    @Option(name: .long, help: ArgumentHelp("Start only after this job succeeded (repeatable; `last` works).", valueName: "JOB")) var after: [String] = []
    @Option(name: .long, help: ArgumentHelp("How long the worker may be out of touch before the job is stopped (and run elsewhere after a grace).", valueName: "DURATION")) var lease: TimeSpan?
    @Flag(name: .long, help: "Submit it held: it waits for `mesh release`.") var hold = false
    @Flag(name: .long, help: "Keep each attempt's workspace on its worker after it ends (default: deleted once its results are collected).") var keepWorkspace = false
    @Flag(name: .long, help: "Wait until it ends; exit with its exit code.") var wait = false
    @Flag(name: .long, help: "Stream its log until it ends (implies --wait).") var follow = false
    @Flag(name: .long, help: "Print the job as JSON.") var json = false
    @Flag(name: .long, help: "Show what would be submitted, and submit nothing.") var dryRun = false
    @Option(name: .long, help: ArgumentHelp("Largest code bundle to send, in MiB.", valueName: "MiB")) var maxBundle: UInt64 = 256
    @Option(name: .long, help: ArgumentHelp("An axis of a sweep: one job per value, as {K} in the command (repeatable: the Cartesian product).", valueName: "K=V1,V2,…"))
    var matrix: [String] = []
    @Option(name: .customShort("x"), help: ArgumentHelp("Run each job N times (as {repeat}).", valueName: "N")) var repeats: Int = 1

    @OptionGroup var data: DataOptions
    @OptionGroup var remote: RemoteOptions

    @Argument(parsing: .captureForPassthrough, help: "The command (after --).") var command: [String] = []

    var argv: [String] { command.first == "--" ? Array(command.dropFirst()) : command }

    func validate() throws {
        if let first = command.first, first != "--", first.hasPrefix("-") {
            throw ValidationError("unknown option '\(first)' (the job's command goes after --)")
        }
        guard !argv.isEmpty else { throw ValidationError("no command: put it after --, e.g. mesh submit -- python train.py") }
        try checkBound(slots, "--slots", 1...Limits.maxJobSlots)
        try checkBound(gpus, "--gpus", 0...Limits.maxGPUs)
        try checkBound(cpus, "--cpus", 0...Limits.maxCPUs)
        try checkBound(retries, "--retries", 0...Limits.maxRetries)
        try checkBound(priority, "--priority", Int(Int32.min)...Int(Int32.max))
        try checkBound(maxBundle, "--max-bundle", 1...65_536)
        try TimeSpan.check(lease, "--lease", 0...Double(Limits.maxLeaseSeconds))
        try TimeSpan.check(timeout, "--timeout", 0...Double(Limits.maxTimeoutSeconds))
        for l in label + env where !l.contains("=") { throw ValidationError("'\(l)' is not K=V") }
        if mem != nil, memoryMB == nil { throw ValidationError("--mem takes a size such as 4096, 4G or 512M, at most \(Limits.maxMemoryMB >> 20) TiB") }
        if code != nil, noCode { throw ValidationError("--code and --no-code cannot go together") }
        guard repeats >= 1, repeats <= 100_000 else { throw ValidationError("-x takes a count from 1 to 100000") }
        _ = try axes()
        for r in results where r.hasPrefix("/") || r.split(separator: "/").contains("..") {
            throw ValidationError("--results '\(r)' must stay inside the workspace (relative, no '..')")
        }
    }

    /// The --matrix axes (and -x as the axis `repeat`).
    func axes() throws -> [Plan.Axis] {
        var out: [Plan.Axis] = []
        for m in matrix {
            let parts = m.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = String(parts[0])
            guard parts.count == 2, Plan.isName(name) else {
                throw ValidationError("--matrix '\(m)' is not NAME=V1,V2,… (a name of letters, digits, '_' and '-')")
            }
            let values = parts[1].split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            guard !values.contains(where: \.isEmpty) else { throw ValidationError("--matrix \(name): an empty value (\(m))") }
            guard !out.contains(where: { $0.name == name }) else { throw ValidationError("--matrix \(name) is given twice") }
            out.append(Plan.Axis(name: name, choices: values.map { [Plan.Value(name, $0)] }))
        }
        if repeats > 1 { out.append(Plan.Axis(name: "repeat", choices: (1...repeats).map { [Plan.Value("repeat", "\($0)")] })) }
        return out
    }

    /// --mem in MiB; nil if it is not a size, or not from 0 to `Limits.maxMemoryMB`.
    var memoryMB: Int? {
        guard let mem else { return 0 }
        let t = mem.uppercased()
        var v: Int?
        if let n = Int(t) { v = n }
        if t.hasSuffix("G"), let g = Double(t.dropLast()), g.isFinite, g >= 0, g * 1024 <= Double(Limits.maxMemoryMB) { v = Int(g * 1024) }
        if t.hasSuffix("M"), let n = Int(t.dropLast()) { v = n }
        return v.flatMap { (0...Limits.maxMemoryMB).contains($0) ? $0 : nil }
    }

    func run() throws {
        Logging.bootstrap(nil)
        if !matrix.isEmpty || repeats > 1 { return try submitSweep() }
        try reportingErrors {
            let snapshot = try noCode ? nil : CodeSnapshot.take(from: code ?? FileManager.default.currentDirectoryPath, plainDirectory: code != nil)
            var spec = try jobSpec()
            spec.workdir = snapshot?.workdir ?? ""
            var provenance = snapshot?.provenance ?? Provenance()
            provenance.submitter = CodeUpload.submitter()
            if dryRun {
                print("would submit: \(spec.command.joined(separator: " "))")
                print("  name \(spec.name), slots \(spec.resources.slots), gpus \(spec.resources.gpus), class '\(spec.nodeClass)', retries \(spec.retries)")
                if let s = snapshot {
                    print("  code: \(s.provenance.code.rawValue) \(s.provenance.directory), \(s.entries.count) files, runs in ./\(s.workdir)")
                    if !s.provenance.commit.isEmpty { print("  commit \(s.provenance.commit) (\(s.provenance.branch))\(s.provenance.diffSummary.isEmpty ? "" : ", with uncommitted changes")") }
                } else {
                    print("  code: none")
                }
                return
            }
            let client = try MeshClient(address: try remote.target(data), secret: try remote.secret(data))
            defer { client.close() }
            if let snapshot { provenance.bundle = try CodeUpload.bundle(snapshot, client: client, maxBundle: maxBundle) }
            let (outcome, _) = try client.write(.submit(spec, provenance, at: 0, via: NodeID(0)))
            guard case .created(let ids, _) = outcome, let id = ids.first else {
                if case .rejected(let why) = outcome { throw SubmitRefused(message: why) }
                throw SubmitRefused(message: "the coordinator did not create a job")
            }
            JobReference.remember(id, data: data)
            spec.name = spec.name.isEmpty ? "job" : spec.name
            if json {
                try printJSON(JobView(try client.jobs([id]).first!))
            } else if !wait && !follow {
                print("submitted job \(id) (\(spec.name))\(provenance.bundle.map { ", code \($0.hash.prefix(12)) on \($0.holders.count) node\($0.holders.count == 1 ? "" : "s")" } ?? "")")
            }
            if follow { try LogsCommand.stream(client: client, job: id, attempt: 0, follow: true) }
            if wait || follow { throw ExitCode(try JobWaiter.wait(client: client, job: id, quiet: follow)) }
        }
    }
}

/// Packs a code snapshot and stores it on two live nodes.
enum CodeUpload {
    static func bundle(_ snapshot: CodeSnapshot, client: MeshClient, maxBundle: UInt64) throws -> BlobRef {
        let tmp = NSTemporaryDirectory() + "mesh-bundle-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        defer { unlink(tmp) }
        let packed: (hash: String, size: UInt64, skipped: [String])
        do {
            packed = try Archive.pack(snapshot.entries, to: tmp, limit: maxBundle << 20)
        } catch ArchiveError.tooLarge {
            throw SubmitRefused(message: "the code in \(snapshot.provenance.directory) is over \(maxBundle) MiB; leave data out of the checkout (.gitignore), pass --code DIR, or raise --max-bundle")
        }
        // Links (and anything else that is not a regular file) are not packed: say which, rather
        // than let a job find them missing.
        if !packed.skipped.isEmpty {
            let shown = packed.skipped.prefix(10).joined(separator: ", ") + (packed.skipped.count > 10 ? ", … (\(packed.skipped.count) in all)" : "")
            FileHandleWriter.stderr("left out of the code bundle (symbolic links and other files that are not regular files are not packed): \(shown)\n")
        }
        let holders = try client.putBlob(tmp, hash: packed.hash, size: packed.size, replicas: 2)
        return BlobRef(hash: packed.hash, size: packed.size, holders: holders)
    }

    static func submitter() -> String {
        "\(ProcessInfo.processInfo.environment["USER"] ?? "user")@\(ProcessInfo.processInfo.hostName)"
    }
}

extension SubmitCommand {
    /// The job the options describe (for a matrix: what every job of it shares).
    func jobSpec() throws -> JobSpec {
        func pairs(_ list: [String]) -> [String: String] {
            Dictionary(list.map { kv in let p = kv.split(separator: "=", maxSplits: 1); return (String(p[0]), p.count > 1 ? String(p[1]) : "") },
                       uniquingKeysWith: { $1 })
        }
        return JobSpec(
            name: name ?? argv.joined(separator: " ").prefix(60).description, command: argv, env: pairs(env),
            resources: Resources(slots: slots, cpus: cpus, memoryMB: memoryMB ?? 0, gpus: gpus), nodeClass: nodeClass, labels: pairs(label),
            timeoutSeconds: timeout.map { UInt64(max(1, $0.duration.components.seconds)) } ?? 0, retries: retries,
            priority: priority, results: results, after: try after.map { try JobReference.resolve($0, data: data) },
            leaseSeconds: lease.map { UInt64(max(1, $0.duration.components.seconds)) } ?? 0, held: hold, keepWorkspace: keepWorkspace)
    }

    /// `--matrix` / `-x`: a one-stage sweep of this command.
    func submitSweep() throws {
        try reportingErrors {
            let base = try jobSpec()
            let plan = Plan(command: .argv(argv), axes: try axes())
            let submission = SweepSubmission(plan: plan, name: base.name, base: base, reuse: false)
            guard let sweep = try submission.run(code: CodeSource(directory: code, none: noCode), dryRun: dryRun, remote: remote, data: data,
                                                 maxBundle: maxBundle, json: json) else { return }
            if wait || follow {
                let client = try MeshClient(address: try remote.target(data), secret: try remote.secret(data))
                defer { client.close() }
                throw ExitCode(try SweepReference.wait(sweep, client: client))
            }
        }
    }
}

struct SubmitRefused: UserFacingError {
    var message: String
    var exitCode: Int32 { ExitStatus.error }
    var description: String { message }
}

/// A job on the command line: a number, or `last` (the last one submitted from this machine).
enum JobReference {
    static func file(_ data: DataOptions) -> String { data.directory.path + "/last-job" }

    static func resolve(_ text: String, data: DataOptions) throws -> JobID {
        if text == "last" {
            guard let s = try? String(contentsOfFile: file(data), encoding: .utf8), let id = JobID(s.trimmingCharacters(in: .whitespacesAndNewlines)) else {
                throw ValidationError("no job has been submitted from this machine yet (no \(file(data)))")
            }
            return id
        }
        guard let id = JobID(text.hasPrefix("#") ? String(text.dropFirst()) : text), id > 0 else {
            throw ValidationError("'\(text)' is not a job: give its number (as `mesh jobs` shows it) or `last`")
        }
        return id
    }

    static func remember(_ id: JobID, data: DataOptions) {
        try? FileManager.default.createDirectory(atPath: data.directory.path, withIntermediateDirectories: true)
        try? "\(id)\n".write(toFile: file(data), atomically: true, encoding: .utf8)
    }
}

enum JobWaiter {
    /// Polls until the job ends; returns the exit code `--wait` exits with.
    static func wait(client: MeshClient, job: JobID, quiet: Bool) throws -> Int32 {
        var last: JobState?
        while true {
            if let j = try? client.jobs([job]).first {
                if j.state != last, !quiet { FileHandleWriter.stderr("job \(job): \(j.state.rawValue)\(j.reason.isEmpty ? "" : " (\(j.reason))")\n") }
                last = j.state
                if j.state.isTerminal {
                    if quiet { FileHandleWriter.stderr("job \(job): \(j.state.rawValue)\(j.reason.isEmpty ? "" : " (\(j.reason))")\n") }
                    if case .exited(let c)? = j.current?.outcome { return c }
                    return j.state == .succeeded ? 0 : 1
                }
            }
            usleep(100_000)
        }
    }
}

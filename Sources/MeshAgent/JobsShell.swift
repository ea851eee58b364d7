import CMeshSystem
import Dispatch
import Foundation
import Logging
import MeshCore
import MeshTransport
import MeshWire

/// How the agent runs jobs.
public struct JobSettings: Sendable {
    /// The command that supervises one attempt (`mesh supervise DIR` is appended the directory).
    public var supervisor: [String]
    /// SIGTERM → SIGKILL.
    public var killGrace: Double = 10
    public var logLimit: UInt64 = 64 << 20
    public var resultsLimit: UInt64 = 1 << 30
    public var bundleLimit: UInt64 = 256 << 20
    /// How often running attempts are looked at (and leases renewed).
    public var pollInterval: Duration = .milliseconds(20)

    public init(supervisor: [String] = JobSettings.defaultSupervisor) {
        self.supervisor = supervisor
    }

    /// This executable, as `mesh supervise`.
    public static var defaultSupervisor: [String] {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return [exe, "supervise"]
    }
}

/// The agent's side of jobs (DESIGN.md §6), on the I/O thread: the worker (attempts assigned to
/// this node: workspace, supervisor, lease renewal, reports), the coordinator's scheduling and
/// loss detection while this node leads, the blob store (code bundles and results, replicated
/// and fetched between agents), and logs served from wherever they are.
final class JobsShell {
    private unowned let consensus: ConsensusShell
    private unowned let membership: MembershipShell
    private let id: NodeID
    private let name: String
    private let settings: JobSettings
    private let logger: Logger
    private let post: @Sendable (@escaping @Sendable (TransportLoop) -> Void) -> Void
    private let attemptsDirectory: String
    let blobs: BlobStore
    private let background = DispatchQueue(label: "mesh.jobs")

    private var worker: Worker
    private var ready = false
    private var local: [Worker.Key: LocalAttempt] = [:]
    private var stoppedEarly: [Worker.Key: Worker.StopReason] = [:]
    /// Supervisors this agent started (its children), until they are reaped.
    private var supervisors: [pid_t: Worker.Key] = [:]
    private var pollTimer: TimerID?

    private var reporter = ClusterState.ClientID(UInt64.random(in: 1 ... .max))
    private var reportSequence: UInt64 = 0
    private var reports: [(key: Worker.Key, command: ClusterState.Command)] = []
    private var reportInFlight = false

    private var managerClient = ClusterState.ClientID(0)
    private var managerSequence: UInt64 = 0
    private var managerInFlight: Consensus.Index = 0
    private var managerTerm: Consensus.Term = 0
    private var manageSoon = false

    private var calls: [UInt64: PeerCall] = [:]
    private var nextCall: UInt64 = 1 << 50
    private var fetches: [String: [(Bool) -> Void]] = [:]

    struct LocalAttempt {
        enum Phase { case preparing, running, ended }
        var phase: Phase
        var files: AttemptFiles
        var lease: Duration
        var leaseWritten: Instant = .zero
        var since = ContinuousClock.now
        /// Our child (0: adopted after a restart, not ours to reap).
        var supervisor: pid_t = 0
        var supervisorIdentity: (pid: Int32, start: UInt64)?
        var startedReported = false
        var stopRequested: Worker.StopReason?
        /// The node that took the submission (nil: look it up when needed).
        var via: NodeID?
    }

    struct PeerCall {
        var handler: (Result<WireEnvelope, CallFailure>) -> Void
    }

    init(id: NodeID, name: String, consensus: ConsensusShell, membership: MembershipShell, directory: DataDirectory,
         settings: JobSettings, logger: Logger, post: @escaping @Sendable (@escaping @Sendable (TransportLoop) -> Void) -> Void) throws(ArchiveError) {
        self.id = id
        self.name = name
        self.consensus = consensus
        self.membership = membership
        self.settings = settings
        self.logger = logger
        self.post = post
        attemptsDirectory = directory.path + "/attempts"
        blobs = try BlobStore(directory: directory.path + "/blobs")
        worker = Worker(node: id)
        if mkdir(attemptsDirectory, 0o700) != 0 && errno != EEXIST { throw .io(attemptsDirectory, errno) }
    }

    /// The largest blob another agent may copy here: a code bundle, or an attempt's results and
    /// log (each under its own limit), with room for the archive's headers.
    var peerBlobLimit: UInt64 { max(settings.bundleLimit, settings.resultsLimit + settings.logLimit) + (64 << 20) }

    /// Whether this node is starting, running or reporting an attempt.
    var busy: Bool { !local.isEmpty || !worker.running.isEmpty }

    /// Copies of results to submitting nodes in flight.
    private var copying = 0
    /// Whether reports or copies of results are still on their way (a node that leaves waits).
    var delivering: Bool { copying > 0 || !reports.isEmpty }

    // MARK: Start and adoption

    /// Deletes an ended attempt's workspace (its results are in the results archive, its log
    /// beside the workspace), off the I/O thread: a big tree takes long to delete, and the I/O
    /// thread keeps the heartbeats going.
    private func removeWorkspace(_ files: AttemptFiles) {
        let workspace = files.workspace
        background.async { [logger] in
            do {
                if FileManager.default.fileExists(atPath: workspace) { try FileManager.default.removeItem(atPath: workspace) }
            } catch {
                logger.warning("cannot delete an ended attempt's workspace", metadata: ["path": "\(workspace)", "why": "\(error)"])
            }
        }
    }

    /// Attempts whose supervisors outlived the previous agent are adopted; their results (if any)
    /// are reported as soon as the coordinator can hear them.
    func start(loop: TransportLoop) {
        for name in ((try? FileManager.default.contentsOfDirectory(atPath: attemptsDirectory)) ?? []).sorted() {
            guard let key = AttemptFiles.key(name) else { continue }
            let files = AttemptFiles(directory: attemptsDirectory + "/" + name)
            if FileManager.default.fileExists(atPath: files.directory + "/reported") {
                // Reported before the last stop, its workspace may still be there (kept by a
                // release that kept them all, or deleted half way): it goes now, unless kept.
                if !(files.read(AttemptSpec.self, files.spec)?.keepWorkspace ?? false) { removeWorkspace(files) }
                continue
            }
            guard FileManager.default.fileExists(atPath: files.spec) else { continue }
            // Its lease and the node that took its submission are read from the state as it comes.
            var a = LocalAttempt(phase: .running, files: files, lease: .zero, via: nil)
            a.supervisorIdentity = files.supervisor()
            local[key] = a
            worker.adopt(key)
            logger.info("adopted an attempt that outlived the previous agent", metadata: ["attempt": "\(key)"])
        }
        schedulePoll(loop)
        scheduleManagement(loop)
    }

    // MARK: After the state changed

    /// Entries were applied: start and stop what the state asks of this node; as coordinator,
    /// schedule soon.
    func applied(loop: TransportLoop) {
        if !ready {
            guard consensus.instance.hasAppliedCurrentTerm else { return }
            ready = true
        }
        // Not on a stale prefix of the log (catching up after a restart or a partition): the rest
        // may already have given this node's attempts to others. The apply that catches up
        // calls this again.
        if consensus.instance.caughtUp {
            carryOut(worker.sync(with: consensus.state, at: unixMillis()), loop: loop)
        }
        if consensus.instance.role == .leader, !manageSoon {
            manageSoon = true
            loop.schedule(after: .milliseconds(2)) { [weak self] loop in
                self?.manageSoon = false
                self?.manage(loop)
            }
        }
    }

    private func carryOut(_ directives: [Worker.Directive], loop: TransportLoop) {
        for d in directives {
            switch d {
            case .start(let key, let spec, let provenance, let gpus):
                start(key, spec, provenance, gpus: gpus, loop: loop)
            case .stop(let key, let reason):
                stop(key, reason, loop: loop)
            case .report(let key, let command):
                reports.append((key, command))
                sendReport(loop)
            }
        }
    }

    // MARK: Starting an attempt

    private func lease(for spec: JobSpec) -> Duration { JobControl.lease(spec, settings: controlSettings) }

    var controlSettings: JobControl.Settings {
        var s = JobControl.Settings()
        let st = consensus.state
        if let v = st.duration(.leaseSeconds) { s.defaultLease = v }
        if let v = st.duration(.leaseGraceSeconds) { s.grace = v }
        s.killGrace = .seconds(double: st.seconds(.killGraceSeconds) ?? settings.killGrace)
        return s
    }

    private func start(_ key: Worker.Key, _ spec: JobSpec, _ provenance: Provenance, gpus: [Int], loop: TransportLoop, tries: Int = 0) {
        // Not while this node's machine setup runs (`mesh node setup`, or an assignment made on
        // gossip from before it started): the attempt waits for it. After a failed setup the
        // attempt fails to start, the machine's fault: it runs elsewhere.
        let setup = membership.instance.meta.setup
        if setup.hasPrefix("failed") {
            return failedToStart(key, "this node's machine setup \(setup)", loop: loop)
        }
        if !setup.isEmpty {
            loop.schedule(after: .milliseconds(200)) { [weak self] loop in
                guard let self, self.worker.running.contains(key), self.local[key] == nil else { return }
                if let reason = self.stoppedEarly.removeValue(forKey: key) {
                    return self.ended(key, reason == .cancelled ? .cancelled : .lost("superseded before it started"), loop: loop)
                }
                self.start(key, spec, provenance, gpus: gpus, loop: loop, tries: tries)
            }
            return
        }
        // A coordinator that has just been elected confirms its lease within a heartbeat or two:
        // wait for it (up to 2 s) rather than give the attempt up. And a node that was paused or
        // cut off while this start waited may hold a fresh lease before it has applied what the
        // coordinator decided meanwhile (this attempt given up and run elsewhere, found by the
        // chaos harness): it waits until it has caught up, when the sync stops such an attempt.
        let leased = consensus.instance.leaseAnchor.map({ $0 + lease(for: spec) > BootClock.now() }) == true
        if !(leased && consensus.instance.caughtUp), tries < 40 {
            loop.schedule(after: .milliseconds(50)) { [weak self] loop in
                guard let self, self.worker.running.contains(key), self.local[key] == nil else { return }
                if let reason = self.stoppedEarly.removeValue(forKey: key) {
                    return self.ended(key, reason == .cancelled ? .cancelled : .lost("superseded before it started"), loop: loop)
                }
                self.start(key, spec, provenance, gpus: gpus, loop: loop, tries: tries + 1)
            }
            return
        }
        guard consensus.instance.caughtUp else {
            return ended(key, .lost("not started: this node had not caught up with the coordinator's log"), loop: loop)
        }
        let files = AttemptFiles(directory: attemptsDirectory + "/" + AttemptFiles.name(key))
        let via = consensus.state.jobs[key.job]?.submittedVia ?? id
        var a = LocalAttempt(phase: .preparing, files: files, lease: lease(for: spec), via: via)
        // A leftover directory of the same attempt (a start that never reported) is replaced.
        try? FileManager.default.removeItem(atPath: files.directory)
        guard mkdir(files.directory, 0o700) == 0, mkdir(files.workspace, 0o700) == 0 else {
            return failedToStart(key, "cannot create \(files.directory): \(String(cString: strerror(errno)))", loop: loop)
        }
        guard renewLease(key, &a, force: true) else {
            return ended(key, .lost("no lease to start under: this node has not heard from the coordinator"), loop: loop)
        }
        let attemptSpec = AttemptSpec(
            job: key.job, attempt: key.attempt, node: name, command: spec.command, env: spec.env, workdir: spec.workdir,
            timeoutSeconds: min(spec.timeoutSeconds, Limits.maxTimeoutSeconds), results: spec.results, gpus: gpus, logLimit: settings.logLimit,
            resultsLimit: settings.resultsLimit,
            killGrace: consensus.state.seconds(.killGraceSeconds) ?? settings.killGrace,
            ignoreLease: consensus.state.fencingDisabled ? true : nil,
            maxResultFiles: consensus.state.setting(.maxResultFiles) ?? Limits.defaultResultFiles,
            keepWorkspace: spec.keepWorkspace ? true : nil)
        do {
            try files.write(attemptSpec, files.spec)
        } catch {
            return failedToStart(key, "cannot write the attempt's spec: \(error)", loop: loop)
        }
        local[key] = a
        guard let bundle = provenance.bundle else { return launch(key, loop: loop) }
        fetch(bundle, loop: loop) { [weak self] ok in
            guard let self, self.local[key]?.phase == .preparing else { return }
            guard ok else {
                // Neither the job's fault nor this machine's: run it again (elsewhere, or once a holder is back).
                return self.ended(key, .lost("could not fetch the code bundle \(bundle.hash.prefix(12)) from any node that holds it"), loop: loop)
            }
            let archive = self.blobs.path(bundle.hash)
            let workspace = files.workspace
            let limit = self.settings.bundleLimit * 4
            self.background.async { [post = self.post] in
                let outcome = JobsShell.unpack(archive, into: workspace, limit: limit)
                post { loop in
                    guard let jobs = (loop.handler as? AgentHandler)?.jobs, jobs.local[key]?.phase == .preparing else { return }
                    if let outcome { jobs.ended(key, outcome, loop: loop) } else { jobs.launch(key, loop: loop) }
                }
            }
        }
    }

    /// Unpacks a code bundle; nil if it worked, else how the attempt ends: a disk that is full or
    /// failing is the machine's, a bundle that is too big, damaged or hostile the job's.
    private static func unpack(_ archive: String, into workspace: String, limit: UInt64) -> AttemptOutcome? {
        do {
            try Archive.unpack(archive, into: workspace, limit: limit)
            return nil
        } catch {
            // A name too long, a path through a file, a link loop: the bundle's content, the same
            // on every node. Anything else the file system says (full, read-only, failing, out of
            // descriptors or permissions) is this machine's.
            if case .io(_, let e) = error, ![ENAMETOOLONG, ELOOP, ENOTDIR, EISDIR, EEXIST, EINVAL, EILSEQ].contains(e) {
                return .failedToStart("cannot unpack the code bundle: \(error)")
            }
            return .rejected("cannot unpack its code bundle: \(error)")
        }
    }

    private func launch(_ key: Worker.Key, loop: TransportLoop, tries: Int = 0) {
        guard var a = local[key] else { return }
        if let reason = a.stopRequested {
            return ended(key, reason == .cancelled ? .cancelled : .lost("superseded before it started"), loop: loop)
        }
        // The same as before the start: not on a stale prefix of the log (the fetch and unpack
        // of a bundle take a while, and the node may have been paused meanwhile).
        if !consensus.instance.caughtUp {
            guard tries < 40 else { return ended(key, .lost("not started: this node had not caught up with the coordinator's log"), loop: loop) }
            loop.schedule(after: .milliseconds(50)) { [weak self] loop in self?.launch(key, loop: loop, tries: tries + 1) }
            return
        }
        let command = settings.supervisor + [a.files.directory]
        let argv = command.map { strdup($0) } + [nil]
        let envp = ProcessInfo.processInfo.environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        var pid: pid_t = 0
        let rc = mesh_spawn(&pid, command[0], argv, envp, nil, nil, 1)
        argv.forEach { free($0) }
        envp.forEach { free($0) }
        guard rc == 0 else {
            return failedToStart(key, "cannot start the supervisor \(command[0]): \(String(cString: strerror(rc)))", loop: loop)
        }
        a.supervisor = pid
        supervisors[pid] = key
        a.phase = .running
        local[key] = a
        schedulePoll(loop)
    }

    private func failedToStart(_ key: Worker.Key, _ why: String, loop: TransportLoop) {
        logger.warning("an attempt could not start", metadata: ["attempt": "\(key)", "why": "\(why)"])
        ended(key, .failedToStart(why), loop: loop)
    }

    private func ended(_ key: Worker.Key, _ outcome: AttemptOutcome, loop: TransportLoop) {
        if local[key] != nil { local[key]!.phase = .ended }
        carryOut(worker.ended(key, outcome: outcome, at: unixMillis()), loop: loop)
    }

    private func stop(_ key: Worker.Key, _ reason: Worker.StopReason, loop: TransportLoop) {
        guard var a = local[key] else {
            // Still waiting for a lease to start under.
            stoppedEarly[key] = reason
            return
        }
        a.stopRequested = reason
        local[key] = a
        switch a.phase {
        case .preparing: ended(key, reason == .cancelled ? .cancelled : .lost("superseded before it started"), loop: loop)
        case .running: try? a.files.writeAtomically(a.files.stop, Array("\(reason.rawValue)\n".utf8))
        case .ended: break
        }
    }

    /// Writes the lease file if the coordinator's last confirmation moves it on. False if there
    /// is no lease at all (never heard from a coordinator in this term). The lease is the one the
    /// coordinator counts with now (the job's own, else the mesh setting), so an adopted attempt
    /// or a changed setting can never leave the worker a longer lease than the coordinator allows.
    @discardableResult
    private func renewLease(_ key: Worker.Key, _ a: inout LocalAttempt, force: Bool = false) -> Bool {
        // Not in the state yet (an adopted attempt before the log caught up): leave its lease be.
        guard let job = consensus.state.jobs[key.job] else { return true }
        a.lease = lease(for: job.spec)
        guard let anchor = consensus.instance.leaseAnchor else { return false }
        let expiry = anchor + a.lease
        guard expiry > BootClock.now() else { return false }
        if force || expiry - a.leaseWritten >= .milliseconds(100) || expiry < a.leaseWritten {
            try? a.files.writeAtomically(a.files.lease, Array("\(expiry.nanoseconds)\n".utf8))
            a.leaseWritten = expiry
        }
        return true
    }

    // MARK: Watching attempts

    private func schedulePoll(_ loop: TransportLoop) {
        guard pollTimer == nil else { return }
        pollTimer = loop.schedule(after: settings.pollInterval) { [weak self] loop in
            guard let self else { return }
            self.pollTimer = nil
            self.poll(loop)
            if !self.local.isEmpty || !self.supervisors.isEmpty { self.schedulePoll(loop) }
        }
    }

    /// As coordinator: loss detection and scheduling four times a second, besides right after
    /// entries are applied (leases are seconds long; new work is scheduled on apply).
    private func scheduleManagement(_ loop: TransportLoop) {
        loop.schedule(after: .milliseconds(250)) { [weak self] loop in
            guard let self else { return }
            if self.consensus.instance.role == .leader { self.manage(loop) }
            self.scheduleManagement(loop)
        }
    }

    /// Reaps the supervisors this agent started that have exited (whatever their attempt's state).
    private func reapSupervisors() {
        for pid in supervisors.keys {
            var status: Int32 = 0
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid || (r < 0 && errno == ECHILD) { supervisors[pid] = nil }
        }
    }

    private func poll(_ loop: TransportLoop) {
        reapSupervisors()
        for key in local.keys.sorted() {
            guard var a = local[key], a.phase == .running else { continue }
            renewLease(key, &a)
            if !a.startedReported, let s = a.files.read(AttemptStarted.self, a.files.started) {
                a.startedReported = true
                if a.supervisorIdentity == nil { a.supervisorIdentity = a.files.supervisor() }
                local[key] = a
                carryOut(worker.started(key, at: s.at), loop: loop)
            }
            local[key] = a
            if let r = a.files.read(AttemptResult.self, a.files.result) {
                finish(key, r, loop: loop)
            } else if !supervisorAlive(&a) {
                local[key] = a
                // It died without a word (kill -9): stop what it ran, and say so.
                if let s = a.files.read(AttemptStarted.self, a.files.started), ProcessIdentity.alive(s.pid, startTime: s.startTime) {
                    kill(-s.pid, SIGKILL)
                }
                let r = AttemptResult(kind: .lost, reason: "its supervisor died", endedAt: unixMillis())
                try? a.files.write(r, a.files.result)
                finish(key, r, loop: loop)
            }
        }
    }

    private func supervisorAlive(_ a: inout LocalAttempt) -> Bool {
        if a.supervisor > 0 {
            guard supervisors[a.supervisor] == nil else { return true }
            // Exited (and reaped): its result file is there unless it was killed.
            a.supervisor = 0
            return FileManager.default.fileExists(atPath: a.files.result)
        }
        if let (pid, start) = a.supervisorIdentity { return ProcessIdentity.alive(pid, startTime: start) }
        // Adopted before the supervisor wrote its pid (it does so first thing): a few seconds.
        if let s = a.files.supervisor() {
            a.supervisorIdentity = s
            return ProcessIdentity.alive(s.pid, startTime: s.start)
        }
        return ContinuousClock.now - a.since < .seconds(5)
    }

    private func finish(_ key: Worker.Key, _ r: AttemptResult, loop: TransportLoop) {
        guard var a = local[key] else { return }
        a.phase = .ended
        local[key] = a
        var bundle: BlobRef?
        if let hash = r.archiveHash, SHA256Hasher.isHash(hash) {
            if blobs.has(hash) || (try? blobs.adopt(a.files.resultsArchive, hash: hash)) != nil {
                bundle = BlobRef(hash: hash, size: r.archiveSize, holders: [id])
            }
        }
        let results = r.results.map { ResultFile(path: $0.path, size: $0.size, sha256: $0.sha256) }
        if !r.refused.isEmpty {
            logger.warning("results refused", metadata: ["attempt": "\(key)", "refused": "\(r.refused.prefix(5))"])
        }
        var refused = Array(r.refused.prefix(Limits.maxRefused))
        if r.refused.count > Limits.maxRefused { refused.append("… and \(r.refused.count - Limits.maxRefused) more") }
        carryOut(worker.ended(key, outcome: r.outcome, results: results, resultsBundle: bundle, logBytes: r.logBytes, at: r.endedAt,
                              refused: refused), loop: loop)
        // A copy of the results and log for the node that took the submission.
        if let bundle, let via = a.via ?? consensus.state.jobs[key.job]?.submittedVia, via != id,
           membership.instance.member(via)?.state == .alive {
            copying += 1
            push(bundle.hash, size: bundle.size, to: via, loop: loop) { [weak self] ok in
                guard let self else { return }
                self.copying -= 1
                guard ok else { return }
                self.reports.append((key, .stored(job: key.job, attempt: key.attempt, node: via)))
                self.sendReport(loop)
            }
        }
    }

    // MARK: Reports

    private func sendReport(_ loop: TransportLoop) {
        guard !reportInFlight, let next = reports.first else { return }
        reportInFlight = true
        reportSequence += 1
        let request = ClusterState.Request(client: reporter, sequence: reportSequence, command: next.command)
        let sequence = reportSequence
        consensus.write(request, path: .local({ [weak self] envelope, loop in
            self?.reportAnswered(envelope, sequence: sequence, loop: loop)
        }), requestID: 0, forwarded: false, loop: loop)
    }

    private func reportAnswered(_ envelope: WireEnvelope, sequence: UInt64, loop: TransportLoop) {
        guard reportInFlight, sequence == reportSequence, let first = reports.first else { return }
        switch envelope.body {
        case .writeReply(let r):
            reports.removeFirst()
            reportInFlight = false
            if case .finished = first.command, let a = local[first.key] {
                // Taken (or refused as stale): this attempt is done with here.
                _ = FileManager.default.createFile(atPath: a.files.directory + "/reported", contents: nil)
                local[first.key] = nil
                if consensus.state.jobs[first.key.job]?.spec.keepWorkspace != true { removeWorkspace(a.files) }
                if case .rejected(let why) = Wire.outcome(r.outcome) {
                    logger.info("the coordinator refused a report", metadata: ["attempt": "\(first.key)", "why": "\(why)"])
                }
            }
            sendReport(loop)
        case .error(let e) where e.code == .badRequest:
            // Refused before it was proposed (out of bounds, too big for one entry): sending it
            // again would never work, and the attempt would stay running for ever. A finished
            // report goes again without its results, the job failed with the reason.
            reportInFlight = false
            logger.warning("a report was refused", metadata: ["attempt": "\(first.key)", "why": "\(e.message)"])
            if case .finished(var r) = first.command, !r.results.isEmpty || !r.refused.isEmpty || r.resultsBundle != nil {
                r.outcome = .rejected("its report was refused: \(e.message.prefix(1000))")
                r.results = []
                r.refused = []
                r.resultsBundle = nil
                reports[0].command = .finished(r)
            } else {
                if case .finished = first.command { local[first.key] = nil }
                reports.removeFirst()
            }
            sendReport(loop)
        default:
            // No coordinator yet, or it changed: the same request again shortly (deduplicated).
            loop.schedule(after: .milliseconds(200)) { [weak self] loop in
                guard let self, self.reportInFlight, self.reportSequence == sequence, let first = self.reports.first else { return }
                let request = ClusterState.Request(client: self.reporter, sequence: sequence, command: first.command)
                self.consensus.write(request, path: .local({ [weak self] envelope, loop in
                    self?.reportAnswered(envelope, sequence: sequence, loop: loop)
                }), requestID: 0, forwarded: false, loop: loop)
            }
        }
    }

    // MARK: The coordinator's part

    /// Lost attempts and new assignments, proposed as one batch at a time.
    func manage(_ loop: TransportLoop) {
        let inst = consensus.instance
        guard inst.role == .leader, let since = inst.leaderSince, inst.hasAppliedCurrentTerm,
              inst.appliedIndex >= managerInFlight || managerTerm != inst.term else { return }
        let state = consensus.state
        let now = consensus.now(loop)
        var commands = JobControl.lost(state, lastContact: inst.lastContact, leaderSince: since, self: id, now: now,
                                       settings: controlSettings, at: unixMillis())
        let control = controlSettings
        let nodes = state.nodes.values.map { n in
            Scheduler.Node(id: n.id, capacity: n.capacity,
                           accepting: membership.instance.member(n.id).map { $0.state == .alive && $0.meta.setup.isEmpty } == true
                               && JobControl.inTouch(n.id, lastContact: inst.lastContact, leaderSince: since, self: id, now: now, settings: control))
        }
        let plan = Scheduler.plan(state, nodes: nodes, term: inst.term, at: unixMillis(), limit: 200)
        if !plan.isEmpty { commands.append(.assign(plan)) }
        guard !commands.isEmpty else { return }
        if managerTerm != inst.term {
            managerTerm = inst.term
            managerClient = ClusterState.ClientID(UInt64.random(in: 1 ... .max))
            managerSequence = 0
        }
        for c in commands {
            managerSequence += 1
            let r = ClusterState.Request(client: managerClient, sequence: managerSequence, command: c)
            guard let index = consensus.propose(r, loop: loop) else { return }
            managerInFlight = index
        }
    }

    // MARK: Blobs

    /// A chunk of a blob from a client (or, with `replicas` 0, an agent copying one to us).
    func put(_ p: WireBlobPut, path: ReplyPath, requestID: UInt64, limit: UInt64? = nil, loop: TransportLoop) {
        let received: (received: UInt64, complete: Bool)
        do {
            received = try blobs.receive(hash: p.hash, size: p.size, offset: p.offset, data: Array(p.data), limit: limit ?? settings.bundleLimit)
        } catch {
            return path.send(Wire.error(.badRequest, error.description, requestID: requestID), loop: loop)
        }
        var reply = WireBlobStored()
        reply.hash = p.hash
        reply.received = received.received
        reply.complete = received.complete
        guard received.complete else { return path.send(Wire.envelope(.blobStored(reply), requestID: requestID), loop: loop) }
        guard p.replicas > 1 else {
            reply.holders = [id.rawValue]
            return path.send(Wire.envelope(.blobStored(reply), requestID: requestID), loop: loop)
        }
        let others = membership.instance.memberList.filter { $0.state == .alive && $0.id != id }.map(\.id).shuffled()
        let wanted = min(Int(p.replicas) - 1, others.count)
        replicate(p.hash, size: p.size, candidates: others, wanted: wanted, holders: [id], loop: loop) { holders in
            if holders.count < wanted + 1 {
                path.send(Wire.error(.unreachable, "the bundle could be stored on only \(holders.count) of \(wanted + 1) live nodes", requestID: requestID), loop: loop)
            } else {
                reply.holders = holders.map(\.rawValue)
                path.send(Wire.envelope(.blobStored(reply), requestID: requestID), loop: loop)
            }
        }
    }

    private func replicate(_ hash: String, size: UInt64, candidates: [NodeID], wanted: Int, holders: [NodeID], loop: TransportLoop,
                           done: @escaping ([NodeID]) -> Void) {
        guard holders.count < wanted + 1, let next = candidates.first else { return done(holders) }
        push(hash, size: size, to: next, loop: loop) { [weak self] ok in
            self?.replicate(hash, size: size, candidates: Array(candidates.dropFirst()), wanted: wanted,
                            holders: ok ? holders + [next] : holders, loop: loop, done: done)
        }
    }

    /// Copies a blob we hold to another agent, chunk by chunk.
    func push(_ hash: String, size: UInt64, to node: NodeID, offset: UInt64 = 0, loop: TransportLoop, done: @escaping (Bool) -> Void) {
        let chunk = blobs.read(hash, offset: offset, length: 1 << 20) ?? []
        var p = WireBlobPut()
        p.hash = hash
        p.size = size
        p.offset = offset
        p.data = Data(chunk)
        call(node, .blobPut(p), timeout: .seconds(10), loop: loop) { [weak self] result in
            guard let self, case .success(let e) = result, case .blobStored(let s) = e.body else { return done(false) }
            if s.complete { return done(true) }
            guard s.received == offset + UInt64(chunk.count), !chunk.isEmpty else { return done(false) }
            self.push(hash, size: size, to: node, offset: s.received, loop: loop, done: done)
        }
    }

    /// A chunk of a blob for a client or an agent; fetched first from `holders` if we lack it.
    func get(_ g: WireBlobGet, path: ReplyPath, requestID: UInt64, loop: TransportLoop) {
        let serve: (TransportLoop) -> Void = { [weak self] loop in
            guard let self, let size = self.blobs.size(g.hash) else {
                return path.send(Wire.error(.notFound, "no node holds blob \(g.hash.prefix(12)) any more", requestID: requestID), loop: loop)
            }
            guard g.offset <= size else {
                return path.send(Wire.error(.badRequest, "offset \(g.offset) is past the end of blob \(g.hash.prefix(12)) (\(size) bytes)", requestID: requestID), loop: loop)
            }
            guard let data = self.blobs.read(g.hash, offset: g.offset, length: Int(min(max(g.length, 1), 4 << 20))) else {
                return path.send(Wire.error(.notFound, "no node holds blob \(g.hash.prefix(12)) any more", requestID: requestID), loop: loop)
            }
            var c = WireBlobChunk()
            c.hash = g.hash
            c.offset = g.offset
            c.size = size
            c.data = Data(data)
            path.send(Wire.envelope(.blobChunk(c), requestID: requestID), loop: loop)
        }
        if blobs.has(g.hash) || g.holders.isEmpty { return serve(loop) }
        fetch(BlobRef(hash: g.hash, size: 0, holders: g.holders.map(NodeID.init)), loop: loop) { _ in serve(loop) }
    }

    /// Makes sure we hold a blob, fetching it from a live holder if needed.
    func fetch(_ ref: BlobRef, loop: TransportLoop, done: @escaping (Bool) -> Void) {
        if blobs.has(ref.hash) { return done(true) }
        if fetches[ref.hash] != nil {
            fetches[ref.hash]!.append(done)
            return
        }
        fetches[ref.hash] = [done]
        let holders = ref.holders.filter { $0 != id && membership.instance.member($0)?.state == .alive }
        fetchFrom(ref.hash, holders: holders, offset: 0, loop: loop)
    }

    private func fetchFrom(_ hash: String, holders: [NodeID], offset: UInt64, loop: TransportLoop) {
        let finish: (Bool) -> Void = { [weak self] ok in
            guard let self else { return }
            if !ok { self.blobs.abandon(hash) }
            for w in self.fetches.removeValue(forKey: hash) ?? [] { w(ok) }
        }
        guard let holder = holders.first else { return finish(false) }
        var g = WireBlobGet()
        g.hash = hash
        g.offset = offset
        g.length = 1 << 20
        call(holder, .blobGet(g), timeout: .seconds(10), loop: loop) { [weak self] result in
            guard let self else { return }
            guard case .success(let e) = result, case .blobChunk(let c) = e.body, c.offset == offset,
                  let got = try? self.blobs.receive(hash: hash, size: c.size, offset: offset, data: Array(c.data), limit: self.peerBlobLimit) else {
                self.blobs.abandon(hash)
                return self.fetchFrom(hash, holders: Array(holders.dropFirst()), offset: 0, loop: loop)
            }
            if got.complete { return finish(true) }
            guard !c.data.isEmpty else { return self.fetchFrom(hash, holders: Array(holders.dropFirst()), offset: 0, loop: loop) }
            self.fetchFrom(hash, holders: holders, offset: got.received, loop: loop)
        }
    }

    // MARK: Logs

    func log(_ r: WireLogRequest, path: ReplyPath, requestID: UInt64, loop: TransportLoop) {
        guard let job = consensus.state.jobs[r.job] else {
            return path.send(Wire.error(.notFound, "no job \(r.job)", requestID: requestID), loop: loop)
        }
        let number = r.attempt == 0 ? (job.current?.number ?? 0) : Int(r.attempt)
        var chunk = WireLogChunk()
        chunk.attempt = UInt32(number)
        chunk.offset = r.offset
        guard let attempt = job.attempts.first(where: { $0.number == number }) else {
            if r.attempt != 0 { return path.send(Wire.error(.notFound, "job \(r.job) has no attempt \(r.attempt)", requestID: requestID), loop: loop) }
            chunk.complete = job.state.isTerminal
            return path.send(Wire.envelope(.logChunk(chunk), requestID: requestID), loop: loop)
        }
        let max = Int(min(max(r.maxBytes, 1), 4 << 20))
        let files = AttemptFiles(directory: attemptsDirectory + "/" + AttemptFiles.name(Worker.Key(job: job.id, attempt: number)))
        let ended = attempt.endedAt != nil
        if attempt.node == id, FileManager.default.fileExists(atPath: files.log) || !ended {
            let fd = open(files.log, O_RDONLY | O_CLOEXEC)
            var data: [UInt8] = []
            var size: UInt64 = 0
            if fd >= 0 {
                var st = stat()
                fstat(fd, &st)
                size = UInt64(st.st_size)
                guard r.offset <= size else {
                    close(fd)
                    return path.send(Wire.error(.badRequest, "offset \(r.offset) is past the end of the log of job \(r.job) attempt \(number) (\(size) bytes)", requestID: requestID), loop: loop)
                }
                data = [UInt8](repeating: 0, count: max)
                let n = data.withUnsafeMutableBytes { pread(fd, $0.baseAddress, max, off_t(r.offset)) }
                data.removeLast(max - Swift.max(0, n))
                close(fd)
            }
            chunk.data = Data(data)
            chunk.complete = (ended || FileManager.default.fileExists(atPath: files.result)) && r.offset + UInt64(data.count) >= size
            return path.send(Wire.envelope(.logChunk(chunk), requestID: requestID), loop: loop)
        }
        if number == job.current?.number, let bundle = job.resultsBundle, blobs.has(bundle.hash),
           let got = try? Archive.read(blobs.path(bundle.hash), entry: ".mesh/log", offset: r.offset, limit: max) {
            guard r.offset <= got.size else {
                return path.send(Wire.error(.badRequest, "offset \(r.offset) is past the end of the log of job \(r.job) attempt \(number) (\(got.size) bytes)", requestID: requestID), loop: loop)
            }
            chunk.data = Data(got.data)
            chunk.complete = r.offset + UInt64(got.data.count) >= got.size
            return path.send(Wire.envelope(.logChunk(chunk), requestID: requestID), loop: loop)
        }
        guard !r.forwarded else {
            return path.send(Wire.error(.notFound, "this node does not hold that log", requestID: requestID), loop: loop)
        }
        // Ask a node that holds it: the worker, else one that has the results.
        var candidates = [attempt.node] + attempt.logHolders
        if number == job.current?.number, let bundle = job.resultsBundle { candidates += bundle.holders }
        let alive = candidates.filter { $0 != id && membership.instance.member($0)?.state == .alive }
        guard !alive.isEmpty else {
            return path.send(Wire.error(.unreachable, "every node that holds the log of job \(r.job) attempt \(number) is down", requestID: requestID), loop: loop)
        }
        forwardLog(r, to: alive, path: path, requestID: requestID, loop: loop)
    }

    private func forwardLog(_ r: WireLogRequest, to nodes: [NodeID], path: ReplyPath, requestID: UInt64, loop: TransportLoop) {
        guard let node = nodes.first else {
            return path.send(Wire.error(.unreachable, "no node that holds the log answered", requestID: requestID), loop: loop)
        }
        var f = r
        f.forwarded = true
        call(node, .logRequest(f), timeout: .seconds(5), loop: loop) { [weak self] result in
            if case .success(let e) = result, case .logChunk = e.body {
                var e = e
                e.requestID = requestID
                return path.send(e, loop: loop)
            }
            self?.forwardLog(r, to: Array(nodes.dropFirst()), path: path, requestID: requestID, loop: loop)
        }
    }

    // MARK: Calls to other agents

    private func call(_ node: NodeID, _ body: WireEnvelope.OneOf_Body, timeout: Duration, loop: TransportLoop,
                      _ handler: @escaping (Result<WireEnvelope, CallFailure>) -> Void) {
        guard let address = membership.instance.member(node)?.meta.address else { return handler(.failure(CallFailure("unknown node"))) }
        let requestID = nextCall
        nextCall += 1
        calls[requestID] = PeerCall(handler: handler)
        membership.peerLinks.send([Wire.encode(body, requestID: requestID)], to: node, address: address, loop: loop)
        loop.schedule(after: timeout) { [weak self] _ in
            guard let c = self?.calls.removeValue(forKey: requestID) else { return }
            c.handler(.failure(CallFailure("no answer within \(timeout)")))
        }
    }

    /// An answer from another agent to one of our calls. False if it is not ours.
    func reply(_ envelope: WireEnvelope, loop: TransportLoop) -> Bool {
        guard envelope.requestID >= 1 << 50, let c = calls.removeValue(forKey: envelope.requestID) else { return false }
        if case .error(let e) = envelope.body { c.handler(.failure(CallFailure(e.message))) } else { c.handler(.success(envelope)) }
        return true
    }

    func stopping(loop: TransportLoop) {
        // Supervisors keep running: they outlive the agent by design, and the next agent adopts them.
        for (_, c) in calls { c.handler(.failure(CallFailure("the agent is stopping"))) }
        calls.removeAll()
    }
}

struct CallFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

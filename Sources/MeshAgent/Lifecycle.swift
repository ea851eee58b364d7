import Dispatch
import Foundation
import Logging
import MeshCore
import MeshTransport
import MeshWire

/// Machine setup before a node takes jobs, and when its agent leaves by itself when idle.
public struct LifecycleSettings: Sendable {
    /// Shell commands (`/bin/sh -c`) run in order when the agent starts, before the node takes
    /// jobs; `{MACHINE}` is replaced by the host part of its advertised address. Empty: none.
    public var setup: [String] = []
    /// How long one setup command may run; then its process group is stopped (SIGTERM, SIGKILL
    /// 10 s later) and the setup has failed.
    public var setupTimeout: Duration = .seconds(3600)
    /// Leave the mesh after this long without a job here, then run `idleCommand` (nil: never).
    public var idleAfter: Duration?
    public var idleCommand: String = ""

    public init() {}
}

/// The parts of running a lab that are neither gossip, consensus nor jobs, on the I/O thread:
///
/// - on every node: machine setup (`--setup`, `mesh node setup`), published in gossip so the
///   coordinator gives the node nothing until it is done; idle shutdown (leave, then a command);
/// - on the coordinator: the deadlines of drains (requeue what still runs), canaries for
///   quarantined nodes, and `scale_up` when jobs have waited too long for capacity.
final class Lifecycle {
    private unowned let consensus: ConsensusShell
    private unowned let membership: MembershipShell
    private unowned let jobs: JobsShell
    private let id: NodeID
    private let directory: DataDirectory
    private let secret: ClusterSecret
    private let settings: LifecycleSettings
    private let logger: Logger
    private let post: @Sendable (@escaping @Sendable (TransportLoop) -> Void) -> Void
    /// Leaves the mesh gracefully (hand over, announce, give up the vote), then calls back.
    var leave: ((TransportLoop, @escaping (TransportLoop) -> Void) -> Void)?
    var requestStop: () -> Void = {}
    private let background = DispatchQueue(label: "mesh.lifecycle")

    // Setup
    private var setupRunning = false
    private var setupWaiters: [(WireSetupReply, TransportLoop) -> Void] = []

    // Idle shutdown
    private var idleSince: ContinuousClock.Instant = .now
    private var shuttingDown = false
    /// Whether this agent has looked for a drain left by its own earlier `mesh leave`.
    private var leavingChecked = false

    // Coordinator duties
    private var client = ClusterState.ClientID(0)
    private var sequence: UInt64 = 0
    private var term: Consensus.Term = 0
    private var requeued: [JobID: ContinuousClock.Instant] = [:]
    /// When this coordinator first saw each node's current drain (its log index).
    private var drainSeen: [NodeID: (index: Consensus.Index, at: ContinuousClock.Instant)] = [:]
    private var lastCanary: [NodeID: ContinuousClock.Instant] = [:]
    /// Canaries that failed in a row per node: the pause before the next doubles with each.
    private var canaryFailures: [NodeID: (count: Int, last: JobID)] = [:]
    private var scaleUps: [ChildProcess] = []
    private var lastScaleUp: ContinuousClock.Instant?
    private var electedAt: ContinuousClock.Instant = .now

    init(id: NodeID, directory: DataDirectory, secret: ClusterSecret, settings: LifecycleSettings, consensus: ConsensusShell,
         membership: MembershipShell, jobs: JobsShell, logger: Logger,
         post: @escaping @Sendable (@escaping @Sendable (TransportLoop) -> Void) -> Void) {
        self.id = id
        self.directory = directory
        self.secret = secret
        self.settings = settings
        self.consensus = consensus
        self.membership = membership
        self.jobs = jobs
        self.logger = logger
        self.post = post
    }

    /// What `meta.setup` says before the first command has run.
    static func initialSetupState(_ settings: LifecycleSettings) -> String {
        settings.setup.isEmpty ? "" : "running: 1 of \(settings.setup.count)"
    }

    func start(loop: TransportLoop) {
        if !settings.setup.isEmpty {
            // The --setup options, unless they are those of the last start and `mesh node setup`
            // has replaced them since: then its list (the fix someone made) runs.
            let flagsFile = directory.path + "/setup-options.json"
            let flags = (try? JSONEncoder().encode(settings.setup)).map { String(decoding: $0, as: UTF8.self) } ?? ""
            let previous = (try? String(contentsOfFile: flagsFile, encoding: .utf8)) ?? ""
            var commands = settings.setup
            if previous == flags, !storedSetup().isEmpty { commands = storedSetup() } else { try? saveSetup(commands) }
            try? directory.writeAtomically(flagsFile, flags)
            runSetup(commands, loop: loop) { _, _ in }
        }
        tick(loop)
    }

    private func tick(_ loop: TransportLoop) {
        loop.schedule(after: .seconds(1)) { [weak self] loop in
            guard let self else { return }
            self.liftOwnLeavingDrain(loop)
            self.idleCheck(loop)
            if self.consensus.instance.role == .leader { self.coordinate(loop) }
            self.reapScaleUps()
            self.tick(loop)
        }
    }

    // MARK: Machine setup

    var setupFile: String { directory.path + "/setup.json" }
    var setupLog: String { directory.path + "/setup.log" }

    private func saveSetup(_ commands: [String]) throws {
        let data = try JSONEncoder().encode(commands)
        try directory.writeAtomically(setupFile, String(decoding: data, as: UTF8.self))
    }

    func storedSetup() -> [String] {
        guard let data = FileManager.default.contents(atPath: setupFile) else { return [] }
        return (try? JSONDecoder().decode([String].self, from: data)) ?? []
    }

    /// `mesh node setup`: these commands (replacing the stored list) or the stored list, run now;
    /// the answer comes when they are done.
    func setupRequest(_ r: WireSetupRequest, path: ReplyPath, requestID: UInt64, loop: TransportLoop) {
        guard !setupRunning else {
            return path.send(Wire.error(.retryLater, "this node's setup is running already; try again when it is done", requestID: requestID), loop: loop)
        }
        var commands = storedSetup()
        if r.replace {
            commands = r.commands
            do { try saveSetup(commands) } catch {
                return path.send(Wire.error(.internal, "cannot store the setup commands: \(error)", requestID: requestID), loop: loop)
            }
        }
        runSetup(commands, loop: loop) { reply, loop in
            path.send(Wire.envelope(.setupReply(reply), requestID: requestID), loop: loop)
        }
    }

    /// Runs the commands one by one on a background thread; the node takes no jobs meanwhile
    /// (gossip says "running"), none after a failure ("failed: …"), and jobs again when all
    /// succeeded.
    private func runSetup(_ commands: [String], loop: TransportLoop, done: @escaping (WireSetupReply, TransportLoop) -> Void) {
        setupRunning = true
        setupWaiters.append(done)
        let machine = machineHost
        let log = setupLog
        let logger = self.logger
        let timeout = settings.setupTimeout
        publishSetup(commands.isEmpty ? "" : "running: 1 of \(commands.count)", loop: loop)
        logger.info("machine setup", metadata: ["commands": "\(commands.count)"])
        background.async { [post] in
            let start = (try? FileManager.default.attributesOfItem(atPath: log)[.size] as? UInt64) ?? 0
            var outcome = SetupOutcome(ok: true, summary: "", output: "")
            for (i, raw) in commands.enumerated() {
                let command = raw.replacingOccurrences(of: "{MACHINE}", with: machine)
                if i > 0 {
                    let state = "running: \(i + 1) of \(commands.count)"
                    post { loop in (loop.handler as? AgentHandler)?.lifecycle?.publishSetup(state, loop: loop) }
                }
                outcome = Lifecycle.run(command, log: log, timeout: timeout)
                if !outcome.ok {
                    outcome.summary = "`\(command)` \(outcome.summary)"
                    break
                }
            }
            // The output of every command of this run (its end, if it is long).
            outcome.output = Lifecycle.tail(log, from: start, limit: 8192)
            let result = outcome
            post { loop in (loop.handler as? AgentHandler)?.lifecycle?.setupDone(result, count: commands.count, loop: loop) }
        }
    }

    private struct SetupOutcome: Sendable {
        var ok: Bool
        var summary: String
        var output: String
    }

    private func setupDone(_ o: SetupOutcome, count: Int, loop: TransportLoop) {
        setupRunning = false
        var reply = WireSetupReply()
        reply.ok = o.ok
        reply.output = o.output
        if o.ok {
            reply.message = count == 0 ? "no setup commands; the node takes jobs" : "setup done (\(count) command\(count == 1 ? "" : "s")); the node takes jobs"
            logger.info("machine setup done")
            publishSetup("", loop: loop)
        } else {
            let last = o.summary.isEmpty ? "" : (o.output.split(separator: "\n").last(where: { !$0.hasPrefix("== ") }).map(String.init) ?? "")
            reply.message = "setup failed: \(o.summary)" + (last.isEmpty ? "" : ": \(last)") + "; the node takes no jobs (output in \(setupLog))"
            logger.warning("machine setup failed: the node takes no jobs", metadata: ["why": "\(o.summary)", "output": "\(last)"])
            publishSetup(Lifecycle.clip("failed: \(o.summary)" + (last.isEmpty ? "" : ": \(last)"), 250), loop: loop)
        }
        idleSince = .now
        let waiters = setupWaiters
        setupWaiters.removeAll()
        for w in waiters { w(reply, loop) }
    }

    func publishSetup(_ state: String, loop: TransportLoop) {
        var meta = membership.instance.meta
        let clipped = Lifecycle.clip(state, 250)
        guard meta.setup != clipped else { return }
        meta.setup = clipped
        membership.updateMeta(meta, loop: loop)
    }

    private var machineHost: String {
        let address = membership.instance.meta.address
        guard let colon = address.lastIndex(of: ":") else { return address }
        return String(address[..<colon])
    }

    /// One command under `/bin/sh -c`, its output appended to `log`; how it went and the end of
    /// its output.
    private static func run(_ command: String, log: String, timeout: Duration) -> SetupOutcome {
        let before = (try? FileManager.default.attributesOfItem(atPath: log)[.size] as? UInt64) ?? 0
        let header = "== \(command)\n"
        if let h = FileHandle(forWritingAtPath: log) ?? { _ = FileManager.default.createFile(atPath: log, contents: nil); return FileHandle(forWritingAtPath: log) }() {
            h.seekToEndOfFile()
            h.write(Data(header.utf8))
            try? h.close()
        }
        let outcome: SetupOutcome
        do {
            let child = try ChildProcess.spawn("/bin/sh", ["-c", command], stdout: log, stderr: log, newSession: true)
            if let ended = child.wait(timeout: timeout) {
                switch ended {
                case .exited(0): outcome = SetupOutcome(ok: true, summary: "", output: "")
                case .exited(let code): outcome = SetupOutcome(ok: false, summary: "exited \(code)", output: "")
                case .signalled(let s): outcome = SetupOutcome(ok: false, summary: "killed by signal \(s)", output: "")
                }
            } else {
                // Its whole process group: a setup command is often a script that runs others.
                child.signalGroup(SIGTERM)
                if child.wait(timeout: .seconds(10)) == nil { child.signalGroup(SIGKILL); child.wait() }
                outcome = SetupOutcome(ok: false, summary: "did not end within \(String(format: "%g", Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18)) s (--setup-timeout; stopped)", output: "")
            }
        } catch {
            outcome = SetupOutcome(ok: false, summary: "could not start: \(error)", output: "")
        }
        var o = outcome
        // The last line of this command's own output, for the one-line reason.
        o.output = tail(log, from: before + UInt64(header.utf8.count), limit: 4096)
        return o
    }

    private static func tail(_ path: String, from offset: UInt64, limit: Int) -> String {
        guard let h = FileHandle(forReadingAtPath: path) else { return "" }
        defer { try? h.close() }
        let end = h.seekToEndOfFile()
        let start = max(offset, end > UInt64(limit) ? end - UInt64(limit) : 0)
        h.seek(toFileOffset: start)
        return String(decoding: h.readDataToEndOfFile(), as: UTF8.self)
    }

    static func clip(_ s: String, _ bytes: Int) -> String {
        guard s.utf8.count > bytes else { return s }
        var out = ""
        for c in s {
            if out.utf8.count + String(c).utf8.count > bytes - 3 { break }
            out.append(c)
        }
        return out + "…"
    }

    // MARK: Idle shutdown

    private func idleCheck(_ loop: TransportLoop) {
        guard let after = settings.idleAfter, !shuttingDown else { return }
        if jobs.busy || setupRunning || consensus.state.usage()[id] != nil {
            idleSince = .now
            return
        }
        guard ContinuousClock.now - idleSince >= after else { return }
        shuttingDown = true
        logger.info("idle: leaving the mesh, then running the idle command", metadata: ["after": "\(after)"])
        // Drain first so that nothing is assigned here while we leave; then wait for anything
        // that was assigned meanwhile to end.
        let name = membership.instance.meta.name
        let request = ClusterState.Request(client: ClusterState.ClientID(UInt64.random(in: 1 ... .max)), sequence: 1,
                                           command: .drain(name: name, deadlineMillis: 0, leaving: true))
        consensus.write(request, path: .local({ [weak self] _, loop in self?.leaveWhenIdle(loop) }), requestID: 0, forwarded: false, loop: loop)
    }

    private func leaveWhenIdle(_ loop: TransportLoop) {
        if jobs.busy || consensus.state.usage()[id] != nil {
            loop.schedule(after: .milliseconds(500)) { [weak self] loop in self?.leaveWhenIdle(loop) }
            return
        }
        let finish: (TransportLoop) -> Void = { [weak self] _ in
            guard let self else { return }
            let command = self.settings.idleCommand
            if !command.isEmpty {
                do {
                    _ = try ChildProcess.spawn("/bin/sh", ["-c", command], stdout: self.directory.path + "/idle-shutdown.log",
                                               stderr: self.directory.path + "/idle-shutdown.log", newSession: true)
                    self.logger.info("left the mesh; the idle command runs", metadata: ["command": "\(command)"])
                } catch {
                    self.logger.error("left the mesh; the idle command could not start", metadata: ["error": "\(error)"])
                }
            }
            self.requestStop()
        }
        if let leave { leave(loop, finish) } else { finish(loop) }
    }

    // MARK: The coordinator's part

    private func coordinate(_ loop: TransportLoop) {
        let inst = consensus.instance
        guard inst.hasAppliedCurrentTerm else { return }
        if term != inst.term {
            term = inst.term
            client = ClusterState.ClientID(UInt64.random(in: 1 ... .max))
            sequence = 0
            requeued.removeAll()
            drainSeen.removeAll()
            electedAt = .now
            // A new coordinator waits a pause before its first canary (the old one may have just
            // sent one); scale-up needs jobs that have waited `scale_up_after_seconds` anyway.
            let now = ContinuousClock.now
            for n in consensus.state.nodes.keys { lastCanary[n] = now }
        }
        let state = consensus.state
        let nowMillis = unixMillis()
        var commands: [ClusterState.Command] = []
        // Drains whose deadline passed, timed from when this coordinator saw them (after a
        // failover the new one starts counting anew: later, never earlier): requeue what still
        // runs there (once per job and minute).
        var active: [NodeID: [Job]]?
        for n in state.nodes.values.sorted(by: { $0.id < $1.id }) where n.draining && n.drainDeadlineMillis > 0 {
            if drainSeen[n.id]?.index != n.drainIndex { drainSeen[n.id] = (n.drainIndex, .now) }
            guard let seen = drainSeen[n.id], ContinuousClock.now - seen.at >= .milliseconds(n.drainDeadlineMillis) else { continue }
            if active == nil { active = Dictionary(grouping: state.activeJobs, by: { $0.current?.node ?? NodeID(0) }) }
            let ids = (active?[n.id] ?? []).filter { job in
                !job.cancelRequested && !job.requeueRequested && requeued[job.id].map { ContinuousClock.now - $0 > .seconds(60) } != false
            }.map(\.id)
            guard !ids.isEmpty else { continue }
            for j in ids { requeued[j] = .now }
            logger.info("drain deadline passed: requeueing what still runs", metadata: ["node": "\(n.name)", "jobs": "\(ids)"])
            commands.append(.requeue(ids, reason: "the drain deadline of \(n.name) passed", at: nowMillis))
        }
        commands += canaries(state, at: nowMillis)
        for c in commands {
            sequence += 1
            _ = consensus.propose(ClusterState.Request(client: client, sequence: sequence, command: c), loop: loop)
        }
        scaleUp(state, at: nowMillis)
    }

    /// One canary at a time for each quarantined node that is alive and done with its setup,
    /// `quarantine_canary_seconds` (default 30) after the last.
    /// A canary that failed doubles the pause before the next one (up to an hour); waiting
    /// canaries for a node that is no longer quarantined (re-admitted by hand, drained, gone) are
    /// cancelled.
    private func canaries(_ state: ClusterState, at: Int64) -> [ClusterState.Command] {
        let waiting = state.pendingJobs.filter(\.spec.canary)
        let stale = waiting.filter { job in job.spec.node.map { state.nodes[$0]?.quarantined != true } ?? true }.map(\.id)
        var out: [ClusterState.Command] = stale.isEmpty ? [] : [.cancel(stale, reason: "its node is no longer quarantined", at: at)]
        let quarantined = state.nodes.values.filter(\.quarantined).sorted { $0.id < $1.id }
        guard !quarantined.isEmpty else { return out }
        let pause = state.settings["quarantine_canary_seconds"].flatMap(Double.init) ?? 30
        let inFlight = Set((waiting + state.activeJobs.filter(\.spec.canary)).compactMap(\.spec.node))
        for n in quarantined where !inFlight.contains(n.id) {
            guard let m = membership.instance.member(n.id), m.state == .alive, m.meta.setup.isEmpty else { continue }
            // How the last canary of ours went.
            if let f = canaryFailures[n.id], let job = state.jobs[f.last], job.state == .failed {
                canaryFailures[n.id] = (f.count + 1, 0)
            }
            let failures = canaryFailures[n.id]?.count ?? 0
            let wait = Duration.seconds(double: min(3600, pause * Double(1 << min(failures, 12))))
            if let last = lastCanary[n.id], ContinuousClock.now - last < wait { continue }
            lastCanary[n.id] = .now
            let spec = JobSpec(name: "canary for \(n.name)", command: ["/bin/sh", "-c", "true"], priority: Int(Int32.max),
                               node: n.id, canary: true)
            logger.info("a canary for a quarantined node", metadata: ["node": "\(n.name)"])
            out.append(.submit(spec, Provenance(submitter: "mesh (quarantine)"), at: at, via: id))
            // Its id is the next one, unless another job is created first; then the failure is
            // not seen and the pause stays as it was (harmless).
            canaryFailures[n.id] = (failures, state.nextJobID)
        }
        return out
    }

    /// A node back after its own `mesh leave` (or idle shutdown) takes jobs again: once caught up,
    /// its agent lifts a leaving drain committed before it started.
    private func liftOwnLeavingDrain(_ loop: TransportLoop) {
        guard !leavingChecked, consensus.instance.caughtUp, consensus.instance.appliedIndex > 0 else { return }
        guard let me = consensus.state.nodes[id] else { return }
        leavingChecked = true
        guard me.draining, me.leaving, me.drainIndex <= consensus.instance.appliedIndex else { return }
        logger.info("back after leaving the mesh: lifting the drain")
        let request = ClusterState.Request(client: ClusterState.ClientID(UInt64.random(in: 1 ... .max)), sequence: 1,
                                           command: .uncordon(name: me.name))
        consensus.write(request, path: .local({ [weak self] envelope, _ in
            if case .writeReply = envelope.body { return }
            self?.leavingChecked = false  // no coordinator yet: try again at the next tick
        }), requestID: 0, forwarded: false, loop: loop)
    }

    /// The mesh setting `scale_up`: run when a job has waited longer than `scale_up_after_seconds`
    /// (default 60) in the queue, at most `scale_up_max` (default 1) at a time, at least
    /// `scale_up_pause_seconds` (default 120) apart. Its environment has MESH_TOKEN (to join with),
    /// MESH_WAITING (jobs waiting that long) and the first such job's MESH_JOB, MESH_CLASS,
    /// MESH_SLOTS, MESH_GPUS; its output goes to scale-up.log in the data directory.
    private func scaleUp(_ state: ClusterState, at: Int64) {
        let s = state.settings
        guard let command = s["scale_up"], !command.isEmpty else { return }
        let after = s["scale_up_after_seconds"].flatMap(Double.init) ?? 60
        let max = s["scale_up_max"].flatMap(Int.init) ?? 1
        let pause = Duration.seconds(double: s["scale_up_pause_seconds"].flatMap(Double.init) ?? 120)
        guard scaleUps.count < max else { return }
        if let last = lastScaleUp, ContinuousClock.now - last < pause { return }
        // A new coordinator waits `scale_up_after_seconds` itself first: its predecessor may have
        // just run the command for the same jobs.
        if ContinuousClock.now - electedAt < .seconds(double: after) { return }
        let waiting = state.pendingJobs.filter { job in
            !job.spec.canary && (at - (job.history.last?.at ?? at)) >= Int64(after * 1000)
        }
        guard let first = waiting.first else { return }
        var env = ProcessInfo.processInfo.environment
        env["MESH_TOKEN"] = token().text
        env["MESH_WAITING"] = "\(waiting.count)"
        env["MESH_JOB"] = "\(first.id)"
        env["MESH_CLASS"] = first.spec.nodeClass
        env["MESH_SLOTS"] = "\(first.spec.resources.slots)"
        env["MESH_GPUS"] = "\(first.spec.resources.gpus)"
        let log = directory.path + "/scale-up.log"
        lastScaleUp = .now
        do {
            let child = try ChildProcess.spawn("/bin/sh", ["-c", command], environment: env, stdout: log, stderr: log, newSession: true)
            scaleUps.append(child)
            logger.info("scale_up: jobs have waited for capacity", metadata: ["waiting": "\(waiting.count)", "first": "\(first.id)", "pid": "\(child.pid)"])
        } catch {
            logger.error("scale_up could not start", metadata: ["error": "\(error)"])
        }
    }

    private func reapScaleUps() {
        scaleUps.removeAll { child in
            guard let t = child.wait(timeout: .zero) else { return false }
            logger.info("scale_up command ended", metadata: ["pid": "\(child.pid)", "how": "\(t)"])
            return true
        }
    }

    /// A join token: the cluster key, this node and up to two other live members.
    private func token() -> JoinToken {
        var seeds: [AgentAddress] = []
        if let me = try? AgentAddress(parsing: membership.instance.meta.address) { seeds.append(me) }
        for m in membership.instance.memberList where m.id != id && m.state == .alive && seeds.count < 3 {
            if let a = try? AgentAddress(parsing: m.meta.address) { seeds.append(a) }
        }
        return JoinToken(secret: secret, seeds: seeds)
    }

    func stopping() {
        // Scale-up commands run on by design (they start machines); they are not ours to stop.
        scaleUps.removeAll()
    }
}

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
    /// The setup command running now (its process group is stopped with the agent).
    private let setupChild = Box<ChildProcess?>(nil)
    private let stopped = Box(false)

    // Idle shutdown
    private var idleSince: ContinuousClock.Instant = .now
    private var shuttingDown = false
    /// Whether this agent has looked for a drain left by its own earlier `mesh leave`.
    private var leavingChecked = false

    // Coordinator duties (decided by LabControl)
    private var lab = LabControl.Instance()
    private var client = ClusterState.ClientID(0)
    private var sequence: UInt64 = 0
    private var term: Consensus.Term = 0
    private var scaleUps: [Int: ChildProcess] = [:]

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

    /// The setup commands this start runs: the `--setup` options, unless they are those of the
    /// last start and `mesh node setup` has replaced them since (then its list: the fix someone
    /// made); without `--setup` options, the node's stored list. Reads files only.
    static func startCommands(_ settings: LifecycleSettings, _ directory: DataDirectory) -> [String] {
        let stored = storedSetup(directory)
        guard !settings.setup.isEmpty else { return stored }
        let previous = (try? String(contentsOfFile: flagsFile(directory), encoding: .utf8)) ?? ""
        return previous == encode(settings.setup) && !stored.isEmpty ? stored : settings.setup
    }

    /// What `meta.setup` says before the first command has run.
    static func initialSetupState(_ settings: LifecycleSettings, _ directory: DataDirectory) -> String {
        let commands = startCommands(settings, directory)
        return commands.isEmpty ? "" : "waiting: 1 of \(commands.count)"
    }

    func start(loop: TransportLoop) {
        let commands = Lifecycle.startCommands(settings, directory)
        if !settings.setup.isEmpty {
            if commands == settings.setup { try? saveSetup(commands) }
            try? directory.writeAtomically(Lifecycle.flagsFile(directory), Lifecycle.encode(settings.setup))
        }
        if !commands.isEmpty { setupWhenJoined(commands, loop: loop) }
        tick(loop)
    }

    /// Machine setup runs once the mesh has accepted this node: a host the mesh refuses (its
    /// name is taken, another release) runs nothing.
    private func setupWhenJoined(_ commands: [String], loop: TransportLoop) {
        switch membership.join {
        case .founder, .joined:
            runSetup(commands, loop: loop) { _, _ in }
        case .joining:
            loop.schedule(after: .milliseconds(100)) { [weak self] loop in self?.setupWhenJoined(commands, loop: loop) }
        case .failed:
            return
        }
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

    var setupFile: String { Lifecycle.setupFile(directory) }
    var setupLog: String { directory.path + "/setup.log" }
    static func setupFile(_ d: DataDirectory) -> String { d.path + "/setup.json" }
    static func flagsFile(_ d: DataDirectory) -> String { d.path + "/setup-options.json" }
    /// Written when this agent leaves the mesh (mesh leave, idle shutdown): the next start lifts
    /// the drain of that leave. Without it (an agent restarted in the middle of a leave's drain)
    /// the drain stays.
    static func leftMarker(_ d: DataDirectory) -> String { d.path + "/left" }

    /// This agent is leaving the mesh (see `leftMarker`).
    func markLeft() {
        _ = FileManager.default.createFile(atPath: Lifecycle.leftMarker(directory), contents: nil)
    }

    private static func encode(_ commands: [String]) -> String {
        (try? JSONEncoder().encode(commands)).map { String(decoding: $0, as: UTF8.self) } ?? ""
    }

    private func saveSetup(_ commands: [String]) throws {
        try directory.writeAtomically(setupFile, Lifecycle.encode(commands))
    }

    static func storedSetup(_ d: DataDirectory) -> [String] {
        guard let data = FileManager.default.contents(atPath: setupFile(d)) else { return [] }
        return (try? JSONDecoder().decode([String].self, from: data)) ?? []
    }

    func storedSetup() -> [String] { Lifecycle.storedSetup(directory) }

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
        background.async { [post, setupChild, stopped] in
            Lifecycle.capLog(log)
            let start = (try? FileManager.default.attributesOfItem(atPath: log)[.size] as? UInt64) ?? 0
            var outcome = SetupOutcome(ok: true, summary: "", output: "")
            for (i, raw) in commands.enumerated() {
                let command = raw.replacingOccurrences(of: "{MACHINE}", with: machine)
                if i > 0 {
                    let state = "running: \(i + 1) of \(commands.count)"
                    post { loop in (loop.handler as? AgentHandler)?.lifecycle?.publishSetup(state, loop: loop) }
                }
                if stopped.value {
                    outcome = SetupOutcome(ok: false, summary: "not run: the agent stopped", output: "")
                    break
                }
                outcome = Lifecycle.run(command, log: log, timeout: timeout, running: setupChild)
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
    private static func run(_ command: String, log: String, timeout: Duration, running: Box<ChildProcess?>) -> SetupOutcome {
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
            running.set(child)
            defer { running.set(nil) }
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

    /// Keeps a log the agent appends to (setup, scale-up, idle command) from growing without
    /// end: past `limit` bytes it becomes `FILE.1` (replacing the one before) and starts afresh.
    static func capLog(_ path: String, limit: UInt64 = 4 << 20) {
        guard let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? UInt64, size > limit else { return }
        _ = rename(path, path + ".1")
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
        let name = membership.instance.meta.name
        // A node cordoned already (by hand, quarantined, draining) is given nothing new: it
        // leaves as it is, and comes back as it was. Any other drains first, so that nothing is
        // assigned here while it leaves, and waits for what was assigned before the drain.
        if consensus.state.nodes[id]?.cordoned == true {
            logger.info("idle: leaving the mesh (cordoned already), then running the idle command", metadata: ["after": "\(after)"])
            return leaveWhenIdle(after: 0, loop)
        }
        logger.info("idle: draining, leaving the mesh, then running the idle command", metadata: ["after": "\(after)"])
        let request = ClusterState.Request(client: ClusterState.ClientID(UInt64.random(in: 1 ... .max)), sequence: 1,
                                           command: .drain(name: name, deadlineMillis: 0, leaving: true))
        consensus.write(request, path: .local({ [weak self] envelope, loop in
            guard let self else { return }
            guard case .writeReply(let r) = envelope.body, Wire.outcome(r.outcome).isDone else {
                // No coordinator, or it refused: stay, and try again later.
                self.logger.warning("idle shutdown put off: the drain was not committed", metadata: ["answer": "\(envelope.body.map { "\($0)" } ?? "none")"])
                self.shuttingDown = false
                self.idleSince = .now - after + .seconds(10)
                return
            }
            self.leaveWhenIdle(after: r.index, loop)
        }), requestID: 0, forwarded: false, loop: loop)
    }

    /// Leaves once this node has applied the log up to the drain (so every assignment made
    /// before it is known here) and nothing is assigned or running here any more.
    private func leaveWhenIdle(after drain: Consensus.Index, _ loop: TransportLoop) {
        if consensus.instance.appliedIndex < drain || jobs.busy || consensus.state.usage()[id] != nil {
            loop.schedule(after: .milliseconds(200)) { [weak self] loop in self?.leaveWhenIdle(after: drain, loop) }
            return
        }
        // The only voter hands over first: unattended, it must not leave a mesh that can no
        // longer decide. If it cannot, it stays (and takes jobs again).
        consensus.handOverLeadership(loop: loop) { [weak self] loop in
            guard let self else { return }
            let others = self.membership.instance.memberList.contains { $0.id != self.id && $0.state == .alive }
            if others, self.consensus.instance.configuration.voters == [self.id] {
                self.logger.warning("idle shutdown put off: this node is the mesh's only voter and could not hand over")
                self.shuttingDown = false
                self.idleSince = .now
                if drain > 0 { self.uncordonSelf(loop) }
                return
            }
            let finish: (TransportLoop) -> Void = { [weak self] _ in
                guard let self else { return }
                let command = self.settings.idleCommand
                if !command.isEmpty {
                    let log = self.directory.path + "/idle-shutdown.log"
                    Lifecycle.capLog(log)
                    do {
                        _ = try ChildProcess.spawn("/bin/sh", ["-c", command], stdout: log, stderr: log, newSession: true)
                        self.logger.info("left the mesh; the idle command runs", metadata: ["command": "\(command)"])
                    } catch {
                        self.logger.error("left the mesh; the idle command could not start", metadata: ["error": "\(error)"])
                    }
                }
                self.requestStop()
            }
            if let leave = self.leave { leave(loop, finish) } else { finish(loop) }
        }
    }

    private func uncordonSelf(_ loop: TransportLoop) {
        let request = ClusterState.Request(client: ClusterState.ClientID(UInt64.random(in: 1 ... .max)), sequence: 1,
                                           command: .uncordon(name: membership.instance.meta.name))
        consensus.write(request, path: .local({ _, _ in }), requestID: 0, forwarded: false, loop: loop)
    }

    // MARK: The coordinator's part

    /// LabControl decides (drain deadlines, canaries, scale-up); this proposes and runs.
    private func coordinate(_ loop: TransportLoop) {
        let inst = consensus.instance
        guard inst.hasAppliedCurrentTerm else { return }
        if term != inst.term {
            term = inst.term
            client = ClusterState.ClientID(UInt64.random(in: 1 ... .max))
            sequence = 0
        }
        let ready = Set(membership.instance.memberList.filter { $0.state == .alive && $0.meta.setup.isEmpty }.map(\.id))
        for d in lab.tick(consensus.state, term: inst.term, ready: ready, me: id, now: consensus.now(loop), at: unixMillis()) {
            switch d {
            case .propose(let command):
                sequence += 1
                switch command {
                case .requeue(let ids, let reason, _): logger.info("requeueing what still runs", metadata: ["why": "\(reason)", "jobs": "\(ids)"])
                case .submit(let spec, _, _, _): logger.info("a canary for a quarantined node", metadata: ["job": "\(spec.name)"])
                default: break
                }
                _ = consensus.propose(ClusterState.Request(client: client, sequence: sequence, command: command), loop: loop)
            case .startScaleUp(let s):
                startScaleUp(s)
            case .stopScaleUp(let n):
                guard let child = scaleUps[n] else { continue }
                logger.warning("scale_up still running after scale_up_timeout_seconds: stopping it", metadata: ["pid": "\(child.pid)"])
                child.signalGroup(SIGTERM)
                loop.schedule(after: .seconds(10)) { _ in child.signalGroup(SIGKILL) }
            }
        }
    }

    /// A node back after its own `mesh leave` (or idle shutdown) takes jobs again: once caught up,
    /// its agent lifts the drain of that leave. Only if it did leave (the marker): an agent
    /// restarted in the middle of a leave's drain leaves the drain as it is.
    private func liftOwnLeavingDrain(_ loop: TransportLoop) {
        guard !leavingChecked, consensus.instance.caughtUp, consensus.instance.appliedIndex > 0 else { return }
        guard let me = consensus.state.nodes[id] else { return }
        let marker = Lifecycle.leftMarker(directory)
        guard FileManager.default.fileExists(atPath: marker) else {
            leavingChecked = true
            return
        }
        leavingChecked = true
        guard me.draining, me.leaving else {
            unlink(marker)
            return
        }
        logger.info("back after leaving the mesh: lifting the drain")
        let request = ClusterState.Request(client: ClusterState.ClientID(UInt64.random(in: 1 ... .max)), sequence: 1,
                                           command: .uncordon(name: me.name))
        consensus.write(request, path: .local({ [weak self] envelope, _ in
            if case .writeReply = envelope.body { unlink(marker); return }
            self?.leavingChecked = false  // no coordinator yet: try again at the next tick
        }), requestID: 0, forwarded: false, loop: loop)
    }

    /// The mesh setting `scale_up`, run under `/bin/sh -c` in a process group of its own, with
    /// MESH_TOKEN (to join with), MESH_WAITING (jobs waiting that long) and the first such job's
    /// MESH_JOB, MESH_CLASS, MESH_SLOTS, MESH_GPUS; its output goes to scale-up.log.
    private func startScaleUp(_ s: LabControl.ScaleUp) {
        var env = ProcessInfo.processInfo.environment
        env["MESH_TOKEN"] = token().text
        env["MESH_WAITING"] = "\(s.waiting)"
        env["MESH_JOB"] = "\(s.job)"
        env["MESH_CLASS"] = s.nodeClass
        env["MESH_SLOTS"] = "\(s.slots)"
        env["MESH_GPUS"] = "\(s.gpus)"
        let log = directory.path + "/scale-up.log"
        Lifecycle.capLog(log)
        do {
            let child = try ChildProcess.spawn("/bin/sh", ["-c", s.command], environment: env, stdout: log, stderr: log, newSession: true)
            scaleUps[s.id] = child
            logger.info("scale_up: jobs have waited for capacity", metadata: ["waiting": "\(s.waiting)", "first": "\(s.job)", "pid": "\(child.pid)"])
        } catch {
            logger.error("scale_up could not start", metadata: ["error": "\(error)"])
            lab.scaleUpEnded(s.id, succeeded: false)
        }
    }

    private func reapScaleUps() {
        for (n, child) in scaleUps.sorted(by: { $0.key < $1.key }) {
            guard let t = child.wait(timeout: .zero) else { continue }
            scaleUps[n] = nil
            logger.info("scale_up command ended", metadata: ["pid": "\(child.pid)", "how": "\(t)"])
            lab.scaleUpEnded(n, succeeded: t == .exited(0))
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
        // A setup command is: the node it prepares is going away (or its join was refused).
        stopped.set(true)
        if let child = setupChild.value {
            child.signalGroup(SIGTERM)
            if child.wait(timeout: .seconds(2)) == nil { child.signalGroup(SIGKILL) }
        }
    }
}

import MeshCore

/// Jobs in the consensus simulation (DESIGN.md §6): clients submit and cancel jobs; the leader
/// schedules them and declares attempts lost by lease; each node's `Worker` starts attempts as
/// processes that outlive a crashed agent (as supervisors do) and are killed when their lease
/// runs out; reports go to the leader until applied. Checked at every step: no job has two
/// processes running at once, no node runs more than its slots, no report is accepted for an
/// attempt that is not current, and every accepted report tells what the process really did.
/// After the faults: every acknowledged job ends, and no process is left running.
/// With `drainRate`, clients also drain nodes with short deadlines (and uncordon them), and the
/// leader runs `LabControl`, which requeues what still runs when a deadline passes: requeues then
/// race failovers, crashes and late reports like every other stop.
extension ConsensusSimulation {
    public struct JobOptions: Sendable {
        public var slotsPerNode = 2
        /// Leases and grace, scaled down like the Raft timings (election timeout 200–400 ms).
        public var lease: Duration = .seconds(1)
        public var grace: Duration = .milliseconds(500)
        /// How long an attempt's process runs, in milliseconds.
        public var duration: ClosedRange<Int64> = 20...600
        /// Chance that an attempt exits non-zero.
        public var failureRate = 0.15
        /// Chance that a client's write is a cancel rather than a submit.
        public var cancelRate = 0.1
        public var retries = 1
        /// Chance, during the faults, that a node dies at one of the fault points (see `FaultPoint`).
        public var faultPointRate = 0.03
        /// Chance that a client's write drains a node (deadline 50–500 ms) or uncordons one (0:
        /// never, and the random streams are those of runs before drains existed).
        public var drainRate = 0.0
        /// How long a stopped attempt's process takes to end (SIGTERM, then SIGKILL after the kill
        /// grace), drawn up to this (0: at once, and the random streams are those of runs before).
        public var stopDelay: Duration = .zero

        public init() {}

        var control: JobControl.Settings {
            var s = JobControl.Settings()
            s.defaultLease = lease
            s.grace = grace
            s.killGrace = .zero  // the simulated supervisor kills at once
            return s
        }
    }

    /// Places inside the code paths where dying is worst, each hit at random during the faults.
    public enum FaultPoint: String, CaseIterable, Sendable {
        case leaderAfterCommittingAssignment = "coordinator dies between committing an assignment and any worker hearing of it"
        case leaderAfterCommittingLoss = "coordinator dies between committing a lost attempt and reassigning it"
        case workerAfterStart = "worker dies between starting an attempt and reporting it started"
        case workerAfterExit = "worker dies between its attempt's exit and the report"
    }

    static func coordinatorFaultPoint(_ entries: [Consensus.Entry]) -> FaultPoint? {
        for e in entries {
            guard case .command(let r) = e.payload else { continue }
            if case .assign = r.command { return .leaderAfterCommittingAssignment }
            if case .lost = r.command { return .leaderAfterCommittingLoss }
        }
        return nil
    }

    /// Maybe crash node `i` at `point` (it comes back 0.2–1.5 s later, a worker up to 3 s); true if it did.
    func crashAtFaultPoint(_ i: Int, _ point: FaultPoint) -> Bool {
        // Losses are rare (a node out of touch for a whole lease): that point fires more often.
        let rate = (jobOptions?.faultPointRate ?? 0) * (point == .leaderAfterCommittingLoss ? 10 : 1)
        guard faultsOn, !booting, jobOptions != nil, nodes[i].instance != nil, rate > 0, faultPointRng.chance(rate) else { return false }
        faultPointsHit[point, default: 0] += 1
        trace?("\(now) fault point n\(i): \(point.rawValue)")
        crash(i)
        // A worker may stay down longer than lease + grace, so that its attempts are declared lost.
        let down = point == .workerAfterStart || point == .workerAfterExit ? 200 + faultPointRng.next() % 2800 : 200 + faultPointRng.next() % 1300
        queue.push(now + .milliseconds(Int64(down)), .reboot(node: i))
        return true
    }

    struct SimProcess {
        var node: Int
        var slots: Int
        var lease: Duration
        var startedAt: Instant
        var endsAt: Instant
        var exitCode: Int32
        /// When its supervisor kills it unless the lease is renewed.
        var expiry: Instant
        var outcome: AttemptOutcome?
        /// Told to stop: how it ends if it has not exited by itself meanwhile.
        var stopping: AttemptOutcome?
        var running: Bool { outcome == nil }
    }

    struct NodeJobs {
        // In memory: lost when the agent crashes.
        var worker: Worker?
        /// The state is recent enough to act on (see `Consensus.Instance.hasAppliedCurrentTerm`).
        var ready = false
        var generation: UInt64 = 0
        var reporter = ClusterState.ClientID(0)
        var sequence: UInt64 = 0
        /// Reports to send, oldest first; the first is in flight with `sequence`.
        var reports: [ClusterState.Command] = []
        var inFlight = false
        var managerClient = ClusterState.ClientID(0)
        var managerSequence: UInt64 = 0
        /// The index of the coordinator's last proposal; it proposes again once that is applied.
        var managerInFlight: Consensus.Index = 0
        /// The coordinator's lab duties (drain deadlines), in memory like the agent's.
        var lab = LabControl.Instance()
        // On disk: the attempts this node started (an agent keeps a directory per attempt).
        var records: Set<Worker.Key> = []
    }

    struct JobsBefore {
        var current: Attempt?
        var active: Bool
        var cancelRequested = false
        var requeueRequested = false
    }

    var millis: Int64 { now.nanoseconds / 1_000_000 }

    // MARK: Agents

    func bootJobs(_ i: Int) {
        var j = nodes[i].jobs
        j.generation += 1
        j.worker = Worker(node: nodes[i].id)
        j.ready = false
        j.reporter = ClusterState.ClientID(rng.next() | 1)
        j.sequence = 0
        j.reports = []
        j.inFlight = false
        j.managerInFlight = 0
        nodes[i].jobs = j
        // Adopt the attempts whose processes outlived the previous agent; report those that ended.
        for key in j.records.sorted() {
            nodes[i].jobs.worker!.adopt(key)
            if processes[key]?.running == false { processEnded(i, key) }
        }
        queue.push(now + .milliseconds(50), .jobTimer(node: i, generation: j.generation))
        queue.push(now + .milliseconds(100), .reportTimer(node: i, generation: j.generation))
    }

    func crashJobs(_ i: Int) {
        let records = nodes[i].jobs.records
        let generation = nodes[i].jobs.generation
        nodes[i].jobs = NodeJobs()
        nodes[i].jobs.records = records
        nodes[i].jobs.generation = generation + 1
    }

    /// After entries were applied: the worker starts and stops what the state asks of this node.
    func syncWorker(_ i: Int) {
        guard let inst = nodes[i].instance, nodes[i].jobs.worker != nil else { return }
        if !nodes[i].jobs.ready {
            guard inst.hasAppliedCurrentTerm else { return }
            nodes[i].jobs.ready = true
        }
        // As the agent: never on a stale prefix of the log (Consensus.Instance.caughtUp).
        guard inst.caughtUp else { return }
        let directives = nodes[i].jobs.worker!.sync(with: nodes[i].state, at: millis)
        carryOutWorker(i, directives)
        // Forget attempts the state is done with and whose process has ended.
        let me = nodes[i].id
        for key in nodes[i].jobs.records where processes[key]?.running != true {
            let job = nodes[i].state.jobs[key.job]
            let current = job.map { $0.state.isActive && $0.current?.number == key.attempt && $0.current?.node == me } ?? false
            if !current { nodes[i].jobs.records.remove(key) }
        }
    }

    func carryOutWorker(_ i: Int, _ directives: [Worker.Directive]) {
        for d in directives {
            switch d {
            case .start(let key, let spec, _, _):
                start(i, key, spec)
            case .stop(let key, let reason):
                guard var p = processes[key], p.running else { continue }
                let outcome: AttemptOutcome = reason == .cancelled ? .cancelled : .lost("superseded")
                if let delay = jobOptions?.stopDelay, delay > .zero {
                    // It ends a while later (its signal handler, its kill grace), or by itself first.
                    p.stopping = outcome
                    processes[key] = p
                    queue.push(now + .nanoseconds(Int64(rng.next() % UInt64(delay.nanosecondsClamped))), .processExit(key))
                    continue
                }
                p.outcome = outcome
                processes[key] = p
                processEnded(i, key)
            case .report(_, let command):
                nodes[i].jobs.reports.append(command)
                if !nodes[i].jobs.inFlight { sendReport(i) }
            }
        }
    }

    private func start(_ i: Int, _ key: Worker.Key, _ spec: JobSpec) {
        guard let inst = nodes[i].instance, let options = jobOptions else { return }
        let lease = spec.leaseSeconds > 0 ? Duration.seconds(Int64(spec.leaseSeconds)) : options.lease
        let expiry = (inst.leaseAnchor ?? .zero) + lease
        guard expiry > now else {
            // No lease to run under (the coordinator may have given the attempt up already).
            carryOutWorker(i, nodes[i].jobs.worker!.ended(key, outcome: .lost("no lease to start under"), at: millis))
            return
        }
        if let other = processes.first(where: { $0.key.job == key.job && $0.value.running }) {
            violations.append("job \(key.job): attempt \(key.attempt) starts on n\(i) while attempt \(other.key.attempt) runs on n\(other.value.node)")
        }
        let used = processes.values.filter { $0.node == i && $0.running }.map(\.slots).reduce(0, +)
        if used + spec.resources.slots > options.slotsPerNode {
            violations.append("n\(i) runs \(used + spec.resources.slots) slots of jobs, more than its \(options.slotsPerNode)")
        }
        let ms = options.duration.lowerBound + Int64(rng.next() % UInt64(options.duration.count))
        let p = SimProcess(node: i, slots: spec.resources.slots, lease: lease, startedAt: now, endsAt: now + .milliseconds(ms),
                           exitCode: rng.chance(options.failureRate) ? 1 : 0, expiry: expiry)
        nodes[i].jobs.records.insert(key)
        processes[key] = p
        queue.push(p.endsAt, .processExit(key))
        queue.push(p.expiry, .supervise(key))
        if crashAtFaultPoint(i, .workerAfterStart) { return }
        carryOutWorker(i, nodes[i].jobs.worker!.started(key, at: millis))
    }

    func processExit(_ key: Worker.Key) {
        guard var p = processes[key], p.running else { return }
        p.outcome = p.stopping != nil && now < p.endsAt ? p.stopping : .exited(p.exitCode)
        processes[key] = p
        queue.push(now + .milliseconds(1), .processEnded(node: p.node, key))
    }

    /// The supervisor: kills the process when its lease has run out.
    func supervise(_ key: Worker.Key) {
        guard var p = processes[key], p.running else { return }
        if p.expiry <= now {
            p.outcome = .lost("lease expired")
            processes[key] = p
            queue.push(now + .milliseconds(1), .processEnded(node: p.node, key))
        } else {
            queue.push(p.expiry, .supervise(key))
        }
    }

    func processEnded(_ i: Int, _ key: Worker.Key) {
        guard nodes[i].jobs.worker != nil, let outcome = processes[key]?.outcome else { return }
        if crashAtFaultPoint(i, .workerAfterExit) { return }
        carryOutWorker(i, nodes[i].jobs.worker!.ended(key, outcome: outcome, at: millis))
    }

    /// Every 50 ms: renew the leases of this node's processes; as coordinator, declare lost
    /// attempts and schedule.
    func jobTimer(_ i: Int) {
        guard let inst = nodes[i].instance, let options = jobOptions else { return }
        if let anchor = inst.leaseAnchor {
            for (key, p) in processes where p.node == i && p.running && anchor + p.lease > p.expiry {
                processes[key]!.expiry = anchor + p.lease
            }
        }
        manage(i, inst, options)
        queue.push(now + .milliseconds(50), .jobTimer(node: i, generation: nodes[i].jobs.generation))
    }

    private func manage(_ i: Int, _ inst: Consensus.Instance, _ options: JobOptions) {
        guard inst.role == .leader, let since = inst.leaderSince, inst.hasAppliedCurrentTerm,
              nodes[i].appliedThrough >= nodes[i].jobs.managerInFlight else { return }
        let state = nodes[i].state
        var commands = JobControl.lost(state, lastContact: inst.lastContact, leaderSince: since, self: inst.id, now: now,
                                       settings: options.control, at: millis)
        // Nodes heard from within a lease take new work (the agent uses gossip for this).
        let accepting = state.nodes.values.map { n in
            Scheduler.Node(id: n.id, capacity: n.capacity,
                           accepting: JobControl.inTouch(n.id, lastContact: inst.lastContact, leaderSince: since, self: inst.id, now: now,
                                                         settings: options.control))
        }
        if options.drainRate > 0 {
            let all = Set(state.nodes.keys)
            for d in nodes[i].jobs.lab.tick(state, term: inst.term, ready: all, me: inst.id, now: now, at: millis) {
                if case .propose(let c) = d { commands.append(c) }
            }
            // Once the faults are over the operator lets every node take jobs again, so that every job can end.
            if !faultsOn {
                for n in state.nodes.values.sorted(by: { $0.id < $1.id }) where n.cordoned { commands.append(.uncordon(name: n.name)) }
            }
        }
        let plan = Scheduler.plan(state, nodes: accepting, term: inst.term, at: millis, limit: 50)
        if !plan.isEmpty { commands.append(.assign(plan)) }
        guard !commands.isEmpty else { return }
        if nodes[i].jobs.managerClient.rawValue == 0 || nodes[i].jobs.managerSequence == 0 {
            nodes[i].jobs.managerClient = ClusterState.ClientID(rng.next() | 1)
        }
        for c in commands {
            nodes[i].jobs.managerSequence += 1
            let r = ClusterState.Request(client: nodes[i].jobs.managerClient, sequence: nodes[i].jobs.managerSequence, command: c)
            guard nodes[i].instance != nil, case .success(let (index, d)) = nodes[i].instance!.propose(r, now: now) else { return }
            nodes[i].jobs.managerInFlight = index
            carryOut(i, d)
        }
    }

    // MARK: Reports

    private func sendReport(_ i: Int) {
        guard let command = nodes[i].jobs.reports.first, let inst = nodes[i].instance else { return }
        if !nodes[i].jobs.inFlight {
            nodes[i].jobs.inFlight = true
            nodes[i].jobs.sequence += 1
        }
        let target = inst.leader.flatMap { index[$0] } ?? Int(rng.next() % UInt64(nodes.count))
        let r = ClusterState.Request(client: nodes[i].jobs.reporter, sequence: nodes[i].jobs.sequence, command: command)
        deliver(.request(to: target, from: .node(i), r), from: i, to: target)
    }

    func reportTimer(_ i: Int) {
        if nodes[i].jobs.inFlight { sendReport(i) }
        queue.push(now + .milliseconds(100), .reportTimer(node: i, generation: nodes[i].jobs.generation))
    }

    func reportReply(_ i: Int, _ sequence: UInt64, _ accepted: Bool, _ hint: NodeID?) {
        guard nodes[i].jobs.inFlight, nodes[i].jobs.sequence == sequence else { return }
        if accepted {
            nodes[i].jobs.reports.removeFirst()
            nodes[i].jobs.inFlight = false
            sendReport(i)
        } else if hint != nil {
            sendReport(i)
        }
    }

    // MARK: Clients

    func jobCommand(client c: Int) -> ClusterState.Command {
        guard let options = jobOptions else { return .setSetting(key: "c\(c)", value: "") }
        let known = createdJobs.values.max() ?? 0
        if options.drainRate > 0, rng.chance(options.drainRate) {
            let name = "n\(rng.next() % UInt64(nodes.count))"
            return rng.chance(0.6) ? .drain(name: name, deadlineMillis: Int64(50 + rng.next() % 450), leaving: false) : .uncordon(name: name)
        }
        if known > 0, rng.chance(options.cancelRate) {
            return .cancel([1 + rng.next() % known], reason: "by client \(c)", at: millis)
        }
        let slots = rng.chance(0.1) ? 2 : 1
        let spec = JobSpec(name: "c\(c)", command: ["sim"], resources: .init(slots: slots), retries: options.retries)
        return .submit(spec, Provenance(), at: millis, via: nodes[clients[c].target].id)
    }

    // MARK: Checks

    func jobsBefore(_ command: ClusterState.Command, on i: Int) -> JobsBefore {
        guard case .finished(let r) = command, let job = nodes[i].state.jobs[r.job] else { return JobsBefore(current: nil, active: false) }
        return JobsBefore(current: job.current, active: job.state.isActive, cancelRequested: job.cancelRequested,
                          requeueRequested: job.requeueRequested)
    }

    /// An accepted report is for the current attempt, and tells what its process did.
    func checkJobCommand(_ command: ClusterState.Command, outcome: ClusterState.Outcome, before: JobsBefore, on i: Int) {
        guard case .finished(let r) = command, case .done = outcome else { return }
        guard before.active, before.current?.number == r.attempt, before.current?.node == r.node else {
            violations.append("n\(i) accepted a stale report for attempt \(r.attempt) of job \(r.job)")
            return
        }
        let key = Worker.Key(job: r.job, attempt: r.attempt)
        if let p = processes[key] {
            if p.outcome != r.outcome { violations.append("report for \(key) says \(r.outcome), its process \(String(describing: p.outcome))") }
        } else if case .lost = r.outcome {
            // Never started (no lease): nothing ran.
        } else if r.outcome == .cancelled, before.cancelRequested || before.requeueRequested {
            // Cancelled (or requeued) before its node started it.
        } else {
            violations.append("report for \(key) (\(r.outcome)) but no process ran")
        }
    }

    var jobsSettled: Bool {
        guard let leader = nodes.firstIndex(where: { $0.instance?.role == .leader }) else { return false }
        let state = nodes[leader].state
        guard processes.values.allSatisfy({ !$0.running }) else { return false }
        guard acknowledgedJobs.allSatisfy({ state.jobs[$0] != nil }) else { return false }
        return state.jobs.values.allSatisfy { $0.state.isTerminal || $0.state == .held }
    }

    var jobsReport: String {
        guard let leader = nodes.firstIndex(where: { $0.instance?.role == .leader }) else { return "no leader" }
        var counts: [String: Int] = [:]
        for j in nodes[leader].state.jobs.values { counts[j.state.rawValue, default: 0] += 1 }
        let unfinished = nodes[leader].state.jobList.filter { !$0.state.isTerminal }.prefix(3).map { "\($0.id): \($0.state.rawValue) \($0.reason)" }
        return "jobs \(counts.sorted { $0.key < $1.key }), running processes \(processes.values.filter(\.running).count), e.g. \(unfinished)"
    }

    /// Once settled: every succeeded job's last attempt really exited 0.
    func finalJobChecks() {
        guard let leader = nodes.firstIndex(where: { $0.instance?.role == .leader }) else { return }
        for job in nodes[leader].state.jobList where job.state == .succeeded {
            guard let a = job.current, processes[Worker.Key(job: job.id, attempt: a.number)]?.outcome == .exited(0) else {
                violations.append("job \(job.id) succeeded but its attempt's process did not exit 0")
                continue
            }
        }
        // The state's indexes (active and pending jobs) agree with the jobs themselves everywhere.
        for (i, n) in nodes.enumerated() {
            let all = n.state.jobList
            if n.state.activeJobs.map(\.id) != all.filter({ $0.state.isActive }).map(\.id)
                || n.state.pendingJobs.map(\.id) != all.filter({ $0.state == .pending }).map(\.id) {
                violations.append("n\(i): the state's job indexes disagree with its jobs")
            }
        }
    }

    /// Jobs by final state (for reports).
    public var jobCounts: [JobState: Int] {
        guard let leader = nodes.firstIndex(where: { $0.instance?.role == .leader }) else { return [:] }
        var counts: [JobState: Int] = [:]
        for j in nodes[leader].state.jobs.values { counts[j.state, default: 0] += 1 }
        return counts
    }

    /// Processes started, and how many of them ran at least once more for the same job.
    public var attemptsStarted: Int { processes.count }

    /// Attempts stopped by a drain's deadline and their jobs put back in the queue (in the
    /// leader's final state).
    public var requeuedAttempts: Int {
        guard let leader = nodes.firstIndex(where: { $0.instance?.role == .leader }) else { return 0 }
        return nodes[leader].state.jobs.values.reduce(0) { n, job in
            n + job.history.filter { $0.state == .pending && $0.reason.contains("drain's deadline") }.count
        }
    }
}

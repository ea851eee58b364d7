import MeshCore
import Testing

/// A state with registered nodes, and helpers to apply commands as the log would.
struct JobStory {
    var state = ClusterState()
    var index: Consensus.Index = 0
    let client = ClusterState.ClientID(1)
    var sequence: UInt64 = 0

    init(nodes: [(String, ClusterState.Capacity)] = [("a", .init(slots: 2, cpus: 8, memoryMB: 1000, gpus: 2)), ("b", .init(slots: 1, cpus: 4))]) {
        for (i, (name, cap)) in nodes.enumerated() {
            _ = apply(.register(NodeID(UInt64(i + 1)), name: name, address: "\(name):1", capacity: cap))
        }
    }

    func id(_ name: String) -> NodeID { state.nodes.values.first { $0.name == name }!.id }
    func job(_ id: JobID) -> Job { state.jobs[id]! }

    @discardableResult
    mutating func apply(_ c: ClusterState.Command) -> ClusterState.Outcome {
        index += 1
        sequence += 1
        return state.apply(.init(client: client, sequence: sequence, command: c), at: index)
    }

    mutating func submit(_ spec: JobSpec) -> JobID? {
        if case .created(let ids, _) = apply(.submit(spec, Provenance(), at: 0, via: NodeID(1))) { return ids.first }
        return nil
    }

    @discardableResult
    mutating func schedule(accepting: Set<String>? = nil) -> [ClusterState.Assignment] {
        let nodes = state.nodes.values.map { Scheduler.Node(id: $0.id, capacity: $0.capacity, accepting: accepting?.contains($0.name) ?? true) }
        let plan = Scheduler.plan(state, nodes: nodes, term: 1, at: 0)
        if !plan.isEmpty { apply(.assign(plan)) }
        return plan
    }

    struct NotCreated: Error {}

    mutating func submitted(_ spec: JobSpec) throws -> JobID {
        guard let id = submit(spec) else { throw NotCreated() }
        return id
    }

    mutating func finish(_ id: JobID, _ outcome: AttemptOutcome) -> ClusterState.Outcome {
        let a = job(id).current!
        return apply(.finished(.init(job: id, attempt: a.number, node: a.node, outcome: outcome, at: 0)))
    }
}

@Suite("Jobs in the replicated state")
struct JobStateTests {
    @Test("submit, assign, start, succeed; every change has a reason")
    func lifecycle() throws {
        var s = JobStory()
        let id = try s.submitted(JobSpec(command: ["true"]))
        #expect(s.job(id).state == .pending)
        #expect(s.schedule().count == 1)
        #expect(s.job(id).state == .assigned)
        let a = s.job(id).current!
        #expect(s.apply(.started(job: id, attempt: 1, node: a.node, at: 5)).isDone)
        #expect(s.job(id).state == .running)
        #expect(s.finish(id, .exited(0)).isDone)
        #expect(s.job(id).state == .succeeded)
        #expect(s.job(id).history.map(\.state) == [.pending, .assigned, .running, .succeeded])
        #expect(s.job(id).history.allSatisfy { !$0.reason.isEmpty })
    }

    @Test("a request no registered node could ever satisfy is refused at submit, with the reason")
    func impossible() {
        var s = JobStory()
        let r = s.apply(.submit(JobSpec(command: ["x"], resources: .init(gpus: 8)), Provenance(), at: 0, via: NodeID(1)))
        #expect(!r.isDone && r.message.contains("GPU"))
        let c = s.apply(.submit(JobSpec(command: ["x"], nodeClass: "tpu"), Provenance(), at: 0, via: NodeID(1)))
        #expect(!c.isDone && c.message.contains("class"))
        #expect(!s.apply(.submit(JobSpec(command: []), Provenance(), at: 0, via: NodeID(1))).isDone)
        #expect(!s.apply(.submit(JobSpec(command: ["x"], after: [99]), Provenance(), at: 0, via: NodeID(1))).isDone)
    }

    @Test("fencing: a report from an attempt that is no longer current, or from another node, is refused")
    func stale() throws {
        var s = JobStory()
        let id = try s.submitted(JobSpec(command: ["sleep"]))
        s.schedule()
        let first = s.job(id).current!
        _ = s.apply(.started(job: id, attempt: 1, node: first.node, at: 0))
        // The coordinator declares attempt 1 lost; attempt 2 goes elsewhere (or the same node).
        #expect(s.apply(.lost(job: id, attempt: 1, reason: "node silent", at: 0)).isDone)
        #expect(s.job(id).state == .pending)
        s.schedule()
        #expect(s.job(id).current!.number == 2)
        // Attempt 1's late report is refused and changes nothing.
        let late = s.apply(.finished(.init(job: id, attempt: 1, node: first.node, outcome: .exited(0), at: 0)))
        #expect(!late.isDone && late.message.contains("stale report"))
        #expect(s.job(id).state == .assigned)
        let wrongNode = s.apply(.started(job: id, attempt: 2, node: NodeID(99), at: 0))
        #expect(!wrongNode.isDone)
    }

    #if DEBUG
    @Test("debug builds with debug_unfenced: the stale report is accepted and the worker keeps a superseded attempt (what the chaos harness must catch)")
    func unfenced() throws {
        var s = JobStory()
        _ = s.apply(.setSetting(key: ClusterState.unfencedSetting, value: "1"))
        #expect(s.state.fencingDisabled)
        let id = try s.submitted(JobSpec(command: ["sleep"]))
        s.schedule()
        let first = s.job(id).current!
        var worker = Worker(node: first.node)
        _ = worker.sync(with: s.state)
        _ = worker.started(.init(job: id, attempt: 1), at: 0)
        _ = s.apply(.started(job: id, attempt: 1, node: first.node, at: 0))
        _ = s.apply(.lost(job: id, attempt: 1, reason: "node silent", at: 0))
        s.schedule()
        #expect(!worker.sync(with: s.state).contains { if case .stop(.init(job: id, attempt: 1), _) = $0 { true } else { false } })
        #expect(s.apply(.finished(.init(job: id, attempt: 1, node: first.node, outcome: .exited(0), at: 0))).isDone)
        #expect(s.job(id).state == .succeeded)
        // Switched back on, fencing refuses as before.
        _ = s.apply(.setSetting(key: ClusterState.unfencedSetting, value: "0"))
        #expect(!s.apply(.finished(.init(job: id, attempt: 2, node: s.job(id).current!.node, outcome: .exited(0), at: 0))).isDone)
    }
    #endif

    @Test("a failed attempt is retried up to --retries; then the job fails with the reason")
    func retries() throws {
        var s = JobStory()
        let id = try s.submitted(JobSpec(command: ["false"], retries: 1))
        s.schedule()
        _ = s.finish(id, .exited(3))
        #expect(s.job(id).state == .pending)
        #expect(s.job(id).reason.contains("retry 1 of 1"))
        s.schedule()
        _ = s.finish(id, .exited(3))
        #expect(s.job(id).state == .failed)
        #expect(s.job(id).reason.contains("exited 3"))
    }

    @Test("lost attempts are requeued without using up retries, up to a bound")
    func lost() throws {
        var s = JobStory()
        let id = try s.submitted(JobSpec(command: ["x"]))
        for _ in 0..<ClusterState.maxLostAttempts {
            s.schedule()
            _ = s.apply(.lost(job: id, attempt: s.job(id).current!.number, reason: "gone", at: 0))
            #expect(s.job(id).state == .pending)
        }
        s.schedule()
        _ = s.apply(.lost(job: id, attempt: s.job(id).current!.number, reason: "gone", at: 0))
        #expect(s.job(id).state == .failed)
    }

    @Test("cancel: at once when waiting; on a node it is asked for, and the end reports it cancelled")
    func cancel() throws {
        var s = JobStory()
        let waiting = try s.submitted(JobSpec(command: ["x"], held: true))
        let running = try s.submitted(JobSpec(command: ["y"]))
        s.schedule()
        _ = s.apply(.cancel([waiting, running], reason: "user", at: 0))
        #expect(s.job(waiting).state == .cancelled)
        #expect(s.job(running).state == .assigned && s.job(running).cancelRequested)
        _ = s.finish(running, .signalled(15))
        #expect(s.job(running).state == .cancelled)
        #expect(s.apply(.retry([running], at: 0)).isDone)
        #expect(s.job(running).state == .pending)
    }

    @Test("dependencies: a job waits for --after jobs, starts when they succeed, fails when one fails")
    func dependencies() throws {
        var s = JobStory()
        let first = try s.submitted(JobSpec(command: ["a"]))
        let second = try s.submitted(JobSpec(command: ["b"], after: [first]))
        let third = try s.submitted(JobSpec(command: ["c"], after: [second]))
        #expect(s.job(second).state == .waiting)
        s.schedule()
        _ = s.finish(first, .exited(0))
        #expect(s.job(second).state == .pending)
        s.schedule()
        _ = s.finish(second, .exited(1))
        #expect(s.job(second).state == .failed)
        #expect(s.job(third).state == .failed)
        #expect(s.job(third).reason.contains("dependency \(second) failed"))
    }

    @Test("hold and release")
    func holdRelease() throws {
        var s = JobStory()
        let id = try s.submitted(JobSpec(command: ["x"]))
        _ = s.apply(.hold([id], at: 0))
        #expect(s.job(id).state == .held)
        #expect(s.schedule().isEmpty)
        _ = s.apply(.release([id], at: 0))
        #expect(s.job(id).state == .pending)
        #expect(!s.apply(.release([id], at: 0)).isDone)
    }
}

@Suite("Scheduler")
struct SchedulerTests {
    @Test("first in, first out by priority; placed where it fits, GPUs by index")
    func fifo() throws {
        var s = JobStory()
        let low = try s.submitted(JobSpec(command: ["low"]))
        let high = try s.submitted(JobSpec(command: ["high"], resources: .init(gpus: 1), priority: 5))
        let plan = s.schedule()
        #expect(plan.map(\.job) == [high, low])
        #expect(plan[0].node == s.id("a") && plan[0].gpus == [0])
    }

    @Test("backfill only where an earlier waiting job does not wait: a big job is not starved by small ones")
    func backfill() throws {
        var s = JobStory()
        // Fill a: two one-slot jobs.
        _ = s.submit(JobSpec(command: ["x"]))
        _ = s.submit(JobSpec(command: ["x"]))
        _ = s.submit(JobSpec(command: ["x"]))
        s.schedule()
        // A two-slot job can only ever run on a; it waits, and reserves a.
        let big = try s.submitted(JobSpec(command: ["big"], resources: .init(slots: 2)))
        let small = try s.submitted(JobSpec(command: ["small"]))
        // Free one slot on a.
        let onA = s.state.jobList.first { $0.current?.node == s.id("a") && $0.state == .assigned }!
        _ = s.finish(onA.id, .exited(0))
        let plan = s.schedule()
        // The small job may not take a's free slot (the big job waits for a); b is full.
        #expect(!plan.contains { $0.job == small })
        #expect(s.job(big).state == .pending)
        // When b frees up, the small job runs there.
        let onB = s.state.jobList.first { $0.current?.node == s.id("b") && $0.state == .assigned }!
        _ = s.finish(onB.id, .exited(0))
        #expect(s.schedule().contains { $0.job == small && $0.node == s.id("b") })
    }

    @Test("class, labels, cordoned and unreachable nodes are respected")
    func constraints() throws {
        var s = JobStory(nodes: [("gpu", .init(nodeClass: "a100", labels: ["zone": "x"], slots: 4, gpus: 4)), ("cpu", .init(slots: 4))])
        let needsClass = try s.submitted(JobSpec(command: ["x"], nodeClass: "a100"))
        let needsLabel = try s.submitted(JobSpec(command: ["x"], labels: ["zone": "x"]))
        _ = s.apply(.cordon(name: "gpu", reason: "maintenance"))
        #expect(s.schedule().isEmpty)
        _ = s.apply(.uncordon(name: "gpu"))
        #expect(s.schedule(accepting: ["cpu"]).isEmpty)
        let plan = s.schedule()
        #expect(Set(plan.map(\.job)) == [needsClass, needsLabel])
        #expect(plan.allSatisfy { $0.node == s.id("gpu") })
    }

    @Test("two plans in flight cannot overcommit a node: the second assignment is dropped when applied")
    func noOvercommit() throws {
        var s = JobStory(nodes: [("one", .init(slots: 1))])
        let a = try s.submitted(JobSpec(command: ["a"]))
        let b = try s.submitted(JobSpec(command: ["b"]))
        let nodes = s.state.nodes.values.map { Scheduler.Node(id: $0.id, capacity: $0.capacity, accepting: true) }
        let p1 = Scheduler.plan(s.state, nodes: nodes, term: 1, at: 0)
        var forB = p1[0]
        forB.job = b
        s.apply(.assign(p1))
        s.apply(.assign([forB]))
        #expect(s.job(a).state == .assigned && s.job(b).state == .pending)
    }
}

@Suite("Job control and workers")
struct JobControlTests {
    @Test("an attempt is lost only after lease + grace without contact, counted from the later of last contact and leadership")
    func leases() throws {
        var s = JobStory()
        let id = try s.submitted(JobSpec(command: ["x"], leaseSeconds: 10))
        s.schedule()
        let node = s.job(id).current!.node
        var settings = JobControl.Settings()
        settings.grace = .seconds(5)
        settings.killGrace = .seconds(2)
        let t0 = Instant.zero
        let me = NodeID(999)
        #expect(JobControl.lost(s.state, lastContact: [node: t0], leaderSince: t0, self: me, now: t0 + .seconds(14), settings: settings, at: 0).isEmpty)
        #expect(JobControl.lost(s.state, lastContact: [node: t0], leaderSince: t0, self: me, now: t0 + .seconds(16), settings: settings, at: 0).count == 1)
        // A job that ignores SIGTERM lives until lease + kill grace: a shorter lease grace does not
        // make the coordinator run it elsewhere before then.
        settings.grace = .seconds(1)
        settings.killGrace = .seconds(8)
        #expect(JobControl.lost(s.state, lastContact: [node: t0], leaderSince: t0, self: me, now: t0 + .seconds(18.5), settings: settings, at: 0).isEmpty)
        #expect(JobControl.lost(s.state, lastContact: [node: t0], leaderSince: t0, self: me, now: t0 + .seconds(19.5), settings: settings, at: 0).count == 1)
        // A new coordinator gives everyone a fresh lease + grace.
        #expect(JobControl.lost(s.state, lastContact: [:], leaderSince: t0 + .seconds(10), self: me, now: t0 + .seconds(20), settings: settings, at: 0).isEmpty)
    }

    @Test("new work goes only to nodes heard from within the lease (found by the chaos harness: a paused node got its lost job back until it was given up)")
    func inTouch() {
        var settings = JobControl.Settings()
        settings.defaultLease = .seconds(2)
        let t0 = Instant.zero, a = NodeID(1), me = NodeID(9)
        #expect(JobControl.inTouch(a, lastContact: [a: t0], leaderSince: t0, self: me, now: t0 + .seconds(1), settings: settings))
        #expect(!JobControl.inTouch(a, lastContact: [a: t0], leaderSince: t0, self: me, now: t0 + .seconds(3), settings: settings))
        // Never heard from: counted from the start of the term, like leases.
        #expect(JobControl.inTouch(a, lastContact: [:], leaderSince: t0 + .seconds(2), self: me, now: t0 + .seconds(3), settings: settings))
        #expect(JobControl.inTouch(me, lastContact: [:], leaderSince: t0, self: me, now: t0 + .seconds(60), settings: settings))
    }

    @Test("a worker starts what the log assigns it, reports, and stops what is cancelled or superseded")
    func worker() throws {
        var s = JobStory()
        let id = try s.submitted(JobSpec(command: ["x"]))
        let other = try s.submitted(JobSpec(command: ["y"]))
        s.schedule()
        let node = s.job(id).current!.node
        var w = Worker(node: node)
        let d = w.sync(with: s.state)
        let starts = d.compactMap { if case .start(let k, _, _, _) = $0 { k.job } else { nil } }
        #expect(starts.contains(id))
        #expect(w.sync(with: s.state).isEmpty)  // nothing twice
        let key = Worker.Key(job: id, attempt: 1)
        #expect(w.started(key, at: 1) == [.report(key, .started(job: id, attempt: 1, node: node, at: 1))])
        _ = s.apply(.cancel([id], reason: "", at: 0))
        #expect(w.sync(with: s.state).contains(.stop(key, .cancelled)))
        let end = w.ended(key, outcome: .signalled(15), at: 2)
        guard case .report(_, .finished(let r))? = end.first else {
            Issue.record("no report")
            return
        }
        #expect(r.outcome == .signalled(15))
        // Superseded: the coordinator gave up on the other attempt.
        if s.job(other).current?.node == node {
            let k2 = Worker.Key(job: other, attempt: 1)
            _ = s.apply(.lost(job: other, attempt: 1, reason: "x", at: 0))
            #expect(w.sync(with: s.state).contains(.stop(k2, .superseded)))
        }
    }

    @Test("an attempt cancelled before its node saw it is reported ended, not left assigned")
    func cancelledBeforeStart() throws {
        var s = JobStory()
        let id = try s.submitted(JobSpec(command: ["x"]))
        s.schedule()
        let node = s.job(id).current!.node
        _ = s.apply(.cancel([id], reason: "changed my mind", at: 0))
        var w = Worker(node: node)
        let d = w.sync(with: s.state, at: 5)
        #expect(!d.contains { if case .start = $0 { true } else { false } })
        guard case .report(_, .finished(let r))? = d.first else {
            Issue.record("no report: \(d)")
            return
        }
        #expect(r.outcome == .cancelled && r.attempt == 1 && r.at == 5)
        _ = s.apply(.finished(r))
        #expect(s.job(id).state == .cancelled)
        #expect(w.sync(with: s.state).isEmpty)
    }
}

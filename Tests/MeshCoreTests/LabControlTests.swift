import MeshCore
import Testing

/// The coordinator's care of the lab (LabControl): drain deadlines, canaries, scale-up, each timed
/// on the coordinator's clock from when it saw what it measures.
@Suite("LabControl: drain deadlines, canaries, scale-up")
struct LabControlTests {
    /// A story on a JobStory: ticks at chosen instants, proposals applied (or not) as the test says.
    struct Coordinator {
        var lab = LabControl.Instance()
        var term: UInt64 = 1
        let me = NodeID(1)

        mutating func tick(_ s: JobStory, at seconds: Double, ready: Set<NodeID>? = nil) -> [LabControl.Directive] {
            lab.tick(s.state, term: term, ready: ready ?? Set(s.state.nodes.keys), me: me,
                     now: Instant(nanoseconds: Int64(seconds * 1e9)), at: 1_000_000)
        }
    }

    static func proposals(_ d: [LabControl.Directive]) -> [ClusterState.Command] {
        d.compactMap { if case .propose(let c) = $0 { c } else { nil } }
    }

    static func scaleUps(_ d: [LabControl.Directive]) -> [LabControl.ScaleUp] {
        d.compactMap { if case .startScaleUp(let s) = $0 { s } else { nil } }
    }

    @Test("a drain's deadline is timed from when this coordinator saw the drain: requeue once, again only if it never committed; a new coordinator counts anew")
    func drainDeadline() throws {
        var s = JobStory()
        var c = Coordinator()
        let job = try s.submitted(JobSpec(command: ["sleep", "60"]))
        s.schedule()
        let node = s.job(job).current!.node
        #expect(s.apply(.drain(name: s.state.nodes[node]!.name, deadlineMillis: 5000, leaving: false)).isDone)
        #expect(Self.proposals(c.tick(s, at: 100)).isEmpty, "seen now: the deadline starts now")
        #expect(Self.proposals(c.tick(s, at: 104.9)).isEmpty)
        let requeue = Self.proposals(c.tick(s, at: 105))
        guard case .requeue(let ids, let reason, _)? = requeue.first else {
            Issue.record("no requeue: \(requeue)")
            return
        }
        #expect(ids == [job] && reason.contains("drain deadline"))
        #expect(Self.proposals(c.tick(s, at: 106)).isEmpty, "proposed already")
        #expect(Self.proposals(c.tick(s, at: 110.5)).count == 1, "not committed within 5 s: proposed again")
        // A new coordinator (another term) saw the drain only now: 5 s from now.
        c.term = 2
        #expect(Self.proposals(c.tick(s, at: 200)).isEmpty)
        #expect(Self.proposals(c.tick(s, at: 204)).isEmpty, "later, never earlier")
        #expect(Self.proposals(c.tick(s, at: 205)).count == 1)
        // Committed: nothing more to do there.
        #expect(s.apply(.requeue([job], reason: "the drain deadline passed", at: 0)).isDone)
        #expect(Self.proposals(c.tick(s, at: 300)).isEmpty)
        // A drain without a deadline never requeues.
        var t = JobStory()
        var d = Coordinator()
        let other = try t.submitted(JobSpec(command: ["sleep", "60"]))
        t.schedule()
        _ = t.apply(.drain(name: t.state.nodes[t.job(other).current!.node]!.name, deadlineMillis: 0, leaving: false))
        #expect(Self.proposals(d.tick(t, at: 0)).isEmpty && Self.proposals(d.tick(t, at: 1e6)).isEmpty)
    }

    @Test("canaries: the first a pause after the quarantine was seen, one at a time, each failure doubles the pause (timed from its end), only for nodes that are ready; each node's own backoff; stale ones are cancelled")
    func canaries() throws {
        var s = JobStory(nodes: [("a", .init(slots: 1, cpus: 4)), ("b", .init(slots: 1, cpus: 4)), ("c", .init(slots: 1, cpus: 4))])
        var c = Coordinator()
        _ = s.apply(.setSetting(key: "quarantine_after", value: "1"))
        _ = s.apply(.setSetting(key: "quarantine_canary_seconds", value: "10"))
        let a = s.id("a"), b = s.id("b")
        for (node, name) in [(a, "a"), (b, "b")] {
            let j = try s.submitted(JobSpec(command: ["x"], node: node))
            s.schedule()
            _ = s.finish(j, .failedToStart("no workspace on \(name)"))
            #expect(s.state.nodes[node]!.quarantined)
            _ = s.apply(.cancel([j], reason: "", at: 0))
        }
        #expect(Self.proposals(c.tick(s, at: 0)).isEmpty, "quarantines seen now")
        #expect(Self.proposals(c.tick(s, at: 9)).isEmpty)
        // b's gossip says it is not ready (dead, or its setup runs): only a gets one.
        let first = Self.proposals(c.tick(s, at: 10, ready: [a, s.id("c")]))
        guard case .submit(let spec, _, _, let via)? = first.first, first.count == 1 else {
            Issue.record("expected one canary: \(first)")
            return
        }
        #expect(spec.canary && spec.node == a && via == c.me && spec.name == "canary for a")
        #expect(Self.proposals(c.tick(s, at: 11, ready: [a])).isEmpty, "proposed: not again before it shows in the state")
        let canaryA = try s.submitted(spec)
        #expect(Self.proposals(c.tick(s, at: 12, ready: [a])).isEmpty, "one at a time")
        s.schedule()
        _ = s.finish(canaryA, .failedToStart("still no workspace"))
        #expect(Self.proposals(c.tick(s, at: 20, ready: [a])).isEmpty, "the failure seen at 20: 20 s from then")
        #expect(Self.proposals(c.tick(s, at: 39.9, ready: [a])).isEmpty)
        let second = Self.proposals(c.tick(s, at: 40, ready: [a]))
        #expect(second.count == 1)
        // b, ready now, gets its first canary (its own count: no failure yet).
        let forB = Self.proposals(c.tick(s, at: 41))
        guard case .submit(let specB, _, _, _)? = forB.first, forB.count == 1 else {
            Issue.record("expected b's canary: \(forB)")
            return
        }
        #expect(specB.node == b)
        // b is re-admitted by hand while its canary waits: the canary is cancelled.
        _ = try s.submitted(specB)
        #expect(s.apply(.uncordon(name: "b")).isDone)
        let stale = Self.proposals(c.tick(s, at: 42))
        #expect(stale.contains { if case .cancel(_, let why, _) = $0 { why.contains("no longer quarantined") } else { false } }, "\(stale)")
    }

    @Test("scale_up: runs for jobs that waited `after` since this coordinator saw them waiting (not by their timestamps), at most `max` in flight until a node registers or the command fails, a pause between, stopped after the timeout")
    func scaleUp() throws {
        var s = JobStory(nodes: [("a", .init(slots: 1, cpus: 4))])
        var c = Coordinator()
        for (k, v) in [("scale_up", "start-a-machine"), ("scale_up_after_seconds", "10"), ("scale_up_pause_seconds", "30"),
                       ("scale_up_timeout_seconds", "100")] {
            #expect(s.apply(.setSetting(key: k, value: v)).isDone)
        }
        let busy = try s.submitted(JobSpec(command: ["sleep", "1000"]))
        s.schedule()
        // Its timestamps say it waited for ages (another machine's clock): it does not matter.
        let waiting = try s.submitted(JobSpec(command: ["train"], resources: .init(slots: 1)))
        _ = try s.submitted(JobSpec(command: ["true"], node: s.id("a")))  // pinned: a new node would not help
        #expect(Self.scaleUps(c.tick(s, at: 0)).isEmpty, "a new coordinator waits a pause first")
        #expect(Self.scaleUps(c.tick(s, at: 29)).isEmpty)
        let up = Self.scaleUps(c.tick(s, at: 30))
        #expect(up.count == 1 && up.first?.job == waiting && up.first?.waiting == 1 && up.first?.command == "start-a-machine", "\(up)")
        let first = try #require(up.first)
        #expect(c.lab.scaleUpsInFlight == 1)
        // Its command returned at once (it asked a cloud): still in flight until a node registers.
        c.lab.scaleUpEnded(first.id, succeeded: true)
        #expect(Self.scaleUps(c.tick(s, at: 70)).isEmpty, "max 1 in flight")
        _ = s.apply(.register(NodeID(50), name: "new", address: "new:1", capacity: .init(slots: 1, cpus: 4)))
        #expect(Self.scaleUps(c.tick(s, at: 71)).count == 1, "the node came: no longer in flight, and the pause is over")
        // A command that fails no longer counts; one that hangs is stopped after the timeout.
        let d = c.tick(s, at: 171)
        #expect(d.contains(.stopScaleUp(2)), "\(d)")
        #expect(Self.scaleUps(d).count == 1, "timed out: no longer in flight; the next one runs")
        c.lab.scaleUpEnded(3, succeeded: false)
        #expect(c.lab.scaleUpsInFlight == 0)
        // Nothing waiting that long: nothing to run.
        _ = s.apply(.cancel([waiting], reason: "", at: 0))
        _ = s.apply(.cancel([busy], reason: "", at: 0))
        #expect(Self.scaleUps(c.tick(s, at: 500)).isEmpty)
        // A job that has waited only 5 s since this coordinator saw it: not yet.
        _ = try s.submitted(JobSpec(command: ["again"], resources: .init(slots: 1)))
        _ = s.apply(.setSetting(key: "scale_up_pause_seconds", value: "0"))
        #expect(Self.scaleUps(c.tick(s, at: 600)).isEmpty)
        #expect(Self.scaleUps(c.tick(s, at: 605)).isEmpty)
        #expect(Self.scaleUps(c.tick(s, at: 610)).count == 1)
        // No scale_up set: nothing.
        _ = s.apply(.setSetting(key: "scale_up", value: ""))
        #expect(Self.scaleUps(c.tick(s, at: 1000)).isEmpty)
    }
}

import MeshCore
import Testing

/// Drains, requeues, quarantine and canaries in the replicated state and the scheduler.
@Suite("Running a lab in the replicated state")
struct LabStateTests {
    @Test("drain: the node takes nothing new, its running job ends normally; a requeue stops the attempt and the job waits again, not counted as a failure")
    func drainAndRequeue() throws {
        var s = JobStory()
        let running = try s.submitted(JobSpec(command: ["sleep", "60"], labels: [:]))
        #expect(s.schedule().count == 1)
        let node = s.job(running).current!.node
        let name = s.state.nodes[node]!.name
        #expect(s.apply(.drain(name: name, deadlineMillis: 5000, leaving: false)).message.contains("1 job running there may finish"))
        #expect(s.state.nodes[node]!.draining && s.state.nodes[node]!.cordoned && s.state.nodes[node]!.drainIndex == s.index)
        // Nothing new goes there.
        let other = try s.submitted(JobSpec(command: ["true"]))
        let plan = s.schedule()
        #expect(plan.allSatisfy { $0.node != node })
        _ = other
        // The deadline passed: requeue. The worker stops it (reported as cancelled); the job waits again.
        #expect(s.apply(.requeue([running], reason: "deadline", at: 6000)).isDone)
        #expect(s.job(running).requeueRequested)
        #expect(!s.apply(.requeue([running], reason: "deadline", at: 6001)).isDone, "once is enough")
        _ = s.finish(running, .cancelled)
        let j = s.job(running)
        #expect(j.state == .pending && j.failedAttempts == 0 && j.lostAttempts == 0 && !j.requeueRequested)
        #expect(j.reason.contains("drain's deadline"))
        // A requeued job that exits non-zero on SIGTERM is not a failure either.
        #expect(s.apply(.uncordon(name: name)).isDone)
        #expect(!s.state.nodes[node]!.draining)
        s.schedule()
        #expect(s.job(running).state == .assigned)
        #expect(s.apply(.requeue([running], reason: "again", at: 7000)).isDone)
        _ = s.finish(running, .exited(143))
        #expect(s.job(running).state == .pending && s.job(running).failedAttempts == 0)
        // A job that ended meanwhile ends as it did.
        s.schedule()
        #expect(s.apply(.requeue([running], reason: "late", at: 8000)).isDone)
        _ = s.finish(running, .exited(0))
        #expect(s.job(running).state == .succeeded)
    }

    @Test("quarantine after K attempts that failed to start in a row; attempts that ran (or a job that cannot run as given) reset the count; only a pinned canary goes there; its success re-admits the node; a cordon by hand is left alone; never the last node that takes jobs")
    func quarantineAndCanary() throws {
        var s = JobStory(nodes: [("a", .init(slots: 1, cpus: 4)), ("b", .init(slots: 1, cpus: 4)), ("c", .init(slots: 1, cpus: 4))])
        #expect(s.apply(.setSetting(key: "quarantine_after", value: "2")).isDone)
        let a = s.id("a"), b = s.id("b")
        // b, cordoned by hand while its attempts fail to start, is never quarantined.
        let onB = try s.submitted(JobSpec(command: ["z"], node: b))
        for _ in 0..<2 {
            s.schedule()
            _ = s.finish(onB, .failedToStart("no workspace"))
        }
        #expect(s.state.nodes[b]!.quarantined && s.state.nodes[b]!.failStreak == 2, "b was uncordoned: quarantined")
        #expect(s.apply(.uncordon(name: "b")).isDone)
        #expect(s.apply(.cordon(name: "b", reason: "by hand")).isDone)
        #expect(s.apply(.cordon(name: "c", reason: "by hand")).isDone)
        s.schedule()
        _ = s.finish(onB, .failedToStart("no workspace"))
        #expect(s.job(onB).state == .pending && s.job(onB).attempts.count == 2, "nothing goes to a node cordoned by hand")
        _ = s.apply(.cancel([onB], reason: "", at: 0))
        // A job that cannot run as given fails, wherever it runs, and says nothing about the node.
        let bad = try s.submitted(JobSpec(command: ["x"], workdir: "missing"))
        s.schedule()
        _ = s.finish(bad, .rejected("no directory missing in the job's code"))
        #expect(s.job(bad).state == .failed && s.state.nodes[a]!.failStreak == 0)
        // Start failures on a: one, then an attempt that ran (exit 1: the job's fault) resets the count.
        let j1 = try s.submitted(JobSpec(command: ["x"]))
        s.schedule()
        _ = s.finish(j1, .failedToStart("no workspace"))
        #expect(s.state.nodes[a]!.failStreak == 1)
        s.schedule()
        _ = s.finish(j1, .exited(1))
        #expect(s.state.nodes[a]!.failStreak == 0 && !s.state.nodes[a]!.quarantined)
        let j2 = try s.submitted(JobSpec(command: ["y"]))
        for _ in 0..<2 {
            s.schedule()
            _ = s.finish(j2, .failedToStart("no workspace"))
        }
        let na = s.state.nodes[a]!
        #expect(na.quarantined && na.cordoned && na.cordonReason.contains("its last 2 attempts failed to start (last: no workspace)"))
        #expect(s.job(j2).state == .pending, "requeued, not failed")
        // Nothing but a canary pinned to it runs there.
        #expect(s.schedule().isEmpty)
        let wrong = try s.submitted(JobSpec(command: ["true"], node: b, canary: true))
        #expect(s.schedule().isEmpty, "a canary for another node does not go to a")
        _ = s.apply(.cancel([wrong], reason: "", at: 0))
        let canary = try s.submitted(JobSpec(command: ["true"], priority: Int(Int32.max), node: a, canary: true))
        let plan = s.schedule()
        #expect(plan.map(\.job) == [canary] && plan.first?.node == a)
        // A failed canary is not retried, and the node stays out.
        _ = s.finish(canary, .failedToStart("still broken"))
        #expect(s.job(canary).state == .failed && s.state.nodes[a]!.quarantined)
        let second = try s.submitted(JobSpec(command: ["true"], node: a, canary: true))
        s.schedule()
        _ = s.finish(second, .exited(0))
        #expect(!s.state.nodes[a]!.quarantined && !s.state.nodes[a]!.cordoned && s.state.nodes[a]!.failStreak == 0)
        #expect(s.schedule().map(\.job) == [j2])
        #expect(s.state.nodes[b]!.cordonReason == "by hand")
        // The last node not quarantined never is, whatever fails there.
        var one = JobStory(nodes: [("solo", .init(slots: 1, cpus: 4))])
        _ = one.apply(.setSetting(key: "quarantine_after", value: "2"))
        let last = try one.submitted(JobSpec(command: ["w"]))
        for _ in 0..<3 {
            one.schedule()
            _ = one.finish(last, .failedToStart("no workspace"))
        }
        #expect(one.state.nodes[one.id("solo")]!.failStreak == 3 && !one.state.nodes[one.id("solo")]!.quarantined)
    }

    @Test("a job pinned to a node runs only there; pinned to an unknown node it is refused at submit")
    func pinned() throws {
        var s = JobStory(nodes: [("a", .init(slots: 4, cpus: 4)), ("b", .init(slots: 4, cpus: 4))])
        let b = s.id("b")
        let ids = try (0..<3).map { _ in try s.submitted(JobSpec(command: ["true"], node: b)) }
        let plan = s.schedule()
        #expect(Set(plan.map(\.job)) == Set(ids) && plan.allSatisfy { $0.node == b })
        #expect(s.submit(JobSpec(command: ["true"], node: NodeID(999))) == nil)
        // The state refuses an assignment elsewhere, whatever a plan says.
        let other = try s.submitted(JobSpec(command: ["true"], node: b))
        _ = s.apply(.assign([.init(job: other, attempt: 1, node: s.id("a"), gpus: [], term: 1, at: 0)]))
        #expect(s.job(other).state == .pending)
    }
}

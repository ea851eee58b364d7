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

    @Test("quarantine after K attempts that failed to start in a row; an attempt that ran resets the count, one the job could not run as given counts for nothing; only a pinned canary goes there; its success re-admits the node")
    func quarantineAndCanary() throws {
        var s = JobStory(nodes: [("a", .init(slots: 1, cpus: 4)), ("b", .init(slots: 1, cpus: 4)), ("c", .init(slots: 1, cpus: 4))])
        #expect(s.apply(.setSetting(key: "quarantine_after", value: "2")).isDone)
        let a = s.id("a"), b = s.id("b")
        for n in ["b", "c"] { #expect(s.apply(.cordon(name: n, reason: "by hand")).isDone) }
        // Start failures on a: one, then an attempt that ran (exit 1: the job's fault) resets the count.
        let j1 = try s.submitted(JobSpec(command: ["x"]))
        s.schedule()
        _ = s.finish(j1, .failedToStart("no workspace"))
        #expect(s.state.nodes[a]!.failStreak == 1)
        s.schedule()
        _ = s.finish(j1, .exited(1))
        #expect(s.state.nodes[a]!.failStreak == 0 && !s.state.nodes[a]!.quarantined)
        // A job that cannot run as given fails wherever it runs, and neither counts nor resets.
        let j2 = try s.submitted(JobSpec(command: ["y"]))
        s.schedule()
        _ = s.finish(j2, .failedToStart("no workspace"))
        #expect(s.apply(.hold([j2], at: 0)).isDone)
        let bad = try s.submitted(JobSpec(command: ["x"], workdir: "missing"))
        s.schedule()
        _ = s.finish(bad, .rejected("no directory missing in the job's code"))
        #expect(s.job(bad).state == .failed && s.state.nodes[a]!.failStreak == 1, "a rejected job says nothing of the node")
        #expect(s.apply(.release([j2], at: 0)).isDone)
        s.schedule()
        _ = s.finish(j2, .failedToStart("no workspace"))
        let na = s.state.nodes[a]!
        #expect(na.quarantined && na.cordoned && na.cordonReason.contains("its last 2 attempts failed to start (last: no workspace)"))
        #expect(na.quarantinedIndex == s.index, "the entry that quarantined it")
        #expect(s.job(j2).state == .pending, "requeued, not failed")
        // Nothing but a canary pinned to it runs there.
        #expect(s.schedule().isEmpty)
        let wrong = try s.submitted(JobSpec(command: ["true"], node: b, canary: true))
        #expect(s.schedule().isEmpty, "a canary for another node does not go to a")
        _ = s.apply(.cancel([wrong], reason: "", at: 0))
        let canary = try s.submitted(JobSpec(command: ["true"], priority: Int(Int32.max), node: a, canary: true))
        #expect(s.submit(JobSpec(command: ["true"], node: a, canary: true)) == nil, "one canary a node at a time")
        let plan = s.schedule()
        #expect(plan.map(\.job) == [canary] && plan.first?.node == a)
        // A failed canary is not retried, and the node stays out.
        _ = s.finish(canary, .failedToStart("still broken"))
        #expect(s.job(canary).state == .failed && s.state.nodes[a]!.quarantined)
        #expect(s.state.canaries(of: a).map(\.id) == [canary])
        let second = try s.submitted(JobSpec(command: ["true"], node: a, canary: true))
        s.schedule()
        _ = s.finish(second, .exited(0))
        #expect(!s.state.nodes[a]!.quarantined && !s.state.nodes[a]!.cordoned && s.state.nodes[a]!.failStreak == 0)
        #expect(s.schedule().map(\.job) == [j2])
        #expect(s.state.nodes[b]!.cordonReason == "by hand")
        // Quarantined again later: only that quarantine's canaries are its canaries.
        _ = s.finish(j2, .exited(0))
        let j3 = try s.submitted(JobSpec(command: ["z"]))
        for _ in 0..<2 {
            s.schedule()
            _ = s.finish(j3, .failedToStart("disk gone"))
        }
        #expect(s.state.nodes[a]!.quarantined && s.state.canaries(of: a).isEmpty)
    }

    @Test("a cordon by hand takes over from a quarantine (no canary re-admits a node being mended); a node cordoned or draining is never quarantined; never the last node not quarantined, nodes that left not counted")
    func quarantineAndTheOperator() throws {
        var s = JobStory(nodes: [("a", .init(slots: 1, cpus: 4)), ("b", .init(slots: 1, cpus: 4))])
        #expect(s.apply(.setSetting(key: "quarantine_after", value: "1")).isDone)
        let a = s.id("a"), b = s.id("b")
        // An attempt assigned before a cordon by hand fails to start: the node stays as the operator left it.
        let j = try s.submitted(JobSpec(command: ["x"], node: a))
        s.schedule()
        #expect(s.apply(.cordon(name: "a", reason: "new disk")).isDone)
        _ = s.finish(j, .failedToStart("no workspace"))
        #expect(!s.state.nodes[a]!.quarantined && s.state.nodes[a]!.cordonReason == "new disk")
        #expect(s.apply(.uncordon(name: "a")).isDone)
        // Quarantined, then cordoned by hand: the cordon's reason, no quarantine, no canary goes there.
        s.schedule()
        _ = s.finish(j, .failedToStart("no workspace"))
        #expect(s.state.nodes[a]!.quarantined)
        #expect(s.apply(.cordon(name: "a", reason: "mending")).message.contains("cordoned"))
        #expect(!s.state.nodes[a]!.quarantined && s.state.nodes[a]!.cordoned && s.state.nodes[a]!.cordonReason == "mending")
        let canary = try s.submitted(JobSpec(command: ["true"], node: a, canary: true))
        #expect(s.schedule().allSatisfy { $0.job != canary }, "a canary does not go to a node cordoned by hand")
        _ = s.apply(.cancel([canary, j], reason: "", at: 0))
        // b is the last node not quarantined, once a has left the mesh: never quarantined.
        #expect(s.apply(.drain(name: "a", deadlineMillis: 0, leaving: true)).isDone)
        let onB = try s.submitted(JobSpec(command: ["w"], node: b))
        for _ in 0..<2 {
            s.schedule()
            _ = s.finish(onB, .failedToStart("no workspace"))
        }
        #expect(s.state.nodes[b]!.failStreak == 2 && !s.state.nodes[b]!.quarantined)
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

    @Test("settings: bad values are refused with the reason when applied, and read back within their bounds", arguments: [
        ("scale_up_pause_seconds", "inf"), ("scale_up_after_seconds", "nan"), ("lease_seconds", "0"), ("lease_seconds", "1e300"),
        ("kill_grace_seconds", "-1"), ("max_voters", "4"), ("max_voters", "11"), ("quarantine_after", "many"), ("scale_up_max", "-2"),
        ("max_plan_jobs", "0"),
    ])
    func badSettings(key: String, value: String) {
        var s = JobStory()
        let r = s.apply(.setSetting(key: key, value: value))
        #expect(!r.isDone && r.message.contains(key), "\(r.message)")
        #expect(s.state.settings[key] == nil)
    }

    @Test("settings: good values are taken; reads are clamped and a duration never traps")
    func goodSettings() {
        var s = JobStory()
        #expect(s.apply(.setSetting(key: "scale_up_pause_seconds", value: "0.5")).isDone)
        #expect(s.state.seconds(.scaleUpPauseSeconds) == 0.5)
        #expect(s.apply(.setSetting(key: "max_voters", value: "3")).isDone && s.state.setting(.maxVoters) == 3)
        #expect(s.apply(.setSetting(key: "scale_up", value: "echo more")).isDone && s.state.text(.scaleUp) == "echo more")
        // Values stored by an older release, before they were checked, are read within bounds.
        let old = ClusterState(nodes: [:], sessions: [:], settings: ["lease_seconds": "inf", "max_voters": "99", "kill_grace_seconds": "nan"],
                               appliedIndex: 1)
        #expect(old.seconds(.leaseSeconds) == ClusterState.Setting.maxSeconds)
        #expect(old.setting(.maxVoters) == 9)
        #expect(old.seconds(.killGraceSeconds) == nil)
        #expect(Duration.seconds(double: .infinity) > .seconds(1_000_000_000) && Duration.seconds(double: .nan) == .zero)
        #expect(Duration.seconds(double: -.infinity) < .zero)
        #expect(ClusterState.Setting.allCases.allSatisfy { !$0.help.isEmpty })
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

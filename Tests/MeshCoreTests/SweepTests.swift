import MeshCore
import Testing

extension JobStory {
    /// A two-stage plan over `n` combinations: `p<i>` then `f<i>` (which depends on `p<i>`).
    static func twoStagePlan(_ n: Int, salt: String = "") -> [PlannedJob] {
        (0..<n).flatMap { i in
            [PlannedJob(spec: JobSpec(name: "p\(i)", command: ["p", "\(i)"], stage: "pretrain"), identity: "p\(i)\(salt)", combination: i, labels: ["\(i)"]),
             PlannedJob(spec: JobSpec(name: "f\(i)", command: ["f", "\(i)"], stage: "finetune"), identity: "f\(i)\(salt)", dependsOn: ["p\(i)\(salt)"],
                        combination: i, labels: ["\(i)"])]
        }
    }

    /// Sends `jobs` in chunks of `chunk`; returns the sweep's id (or the refusal).
    mutating func plan(_ jobs: [PlannedJob], chunk: Int = 3, reuse: Bool = true, total: Int? = nil) -> Result<SweepID, PlanRefused> {
        var sweep: SweepID = 0
        var start = 0
        repeat {
            let part = Array(jobs[start..<min(jobs.count, start + chunk)])
            start += chunk
            let final = start >= jobs.count
            let outcome = apply(.plan(PlanChunk(sweep: sweep, name: "plan.yaml", axes: ["i"], stages: ["pretrain", "finetune"],
                                                total: total ?? jobs.count, reuse: reuse, jobs: part, final: final)))
            switch outcome {
            case .created(let ids, _): sweep = ids[0]
            default: return .failure(PlanRefused(message: outcome.message))
            }
        } while start < jobs.count
        return .success(sweep)
    }

    func sweep(_ id: SweepID) -> Sweep { state.sweeps[id]! }
    func cellJob(_ sweep: SweepID, _ name: String) -> Job { state.jobs[self.sweep(sweep).cells.first { state.jobs[$0.job]!.spec.name == name }!.job]! }

    /// Runs every job that can start until none can, ending each as `outcome(name)` says.
    mutating func runAll(_ outcome: (String) -> AttemptOutcome = { _ in .exited(0) }) {
        while true {
            let assigned = schedule()
            if assigned.isEmpty { return }
            for a in assigned { _ = finish(a.job, outcome(job(a.job).spec.name)) }
        }
    }
}

struct PlanRefused: Error { var message: String }

@Suite("Sweeps: plans in the replicated state")
struct SweepStateTests {
    @Test("chunks stage the plan; the last creates every job, dependencies by identity; nothing before it")
    func chunks() throws {
        var s = JobStory()
        let sweep = try s.plan(JobStory.twoStagePlan(4)).get()
        let sw = s.sweep(sweep)
        #expect(sw.status == .submitted)
        #expect(sw.cells.count == 8)
        #expect(sw.created == 8)
        #expect(s.state.jobs.count == 8)
        let f2 = s.cellJob(sweep, "f2")
        #expect(f2.spec.after == [s.cellJob(sweep, "p2").id])
        #expect(f2.state == .waiting)
        #expect(f2.spec.sweep == sweep)
        #expect(s.cellJob(sweep, "p2").state == .pending)

        // A plan that never sends its last chunk creates nothing, and is abandoned eventually.
        var jobs = JobStory.twoStagePlan(3, salt: "x")
        jobs.removeLast()
        guard case .created(let ids, _) = s.apply(.plan(PlanChunk(total: 6, jobs: jobs))) else { Issue.record("not staged"); return }
        #expect(s.state.jobs.count == 8)
        #expect(s.sweep(ids[0]).status == .staging)
        while s.index < ClusterState.sweepStagingRetention + 2000 { s.apply(.setSetting(key: "k", value: "\(s.index)")) }
        #expect(s.sweep(ids[0]).status == .abandoned)
        #expect(s.apply(.plan(PlanChunk(sweep: ids[0], jobs: [], final: true))).isDone == false)
    }

    @Test("a bad job anywhere, a short plan or a dependency that is not earlier refuses the whole plan")
    func atomic() {
        var s = JobStory()
        var jobs = JobStory.twoStagePlan(4)
        jobs[6].spec.resources.gpus = 99
        guard case .failure(let e) = s.plan(jobs) else { Issue.record("accepted"); return }
        #expect(e.message.contains("nothing submitted"))
        #expect(e.message.contains("cannot run"))
        #expect(s.state.jobs.isEmpty)

        jobs = JobStory.twoStagePlan(2)
        jobs.swapAt(0, 1)
        guard case .failure(let e2) = s.plan(jobs) else { Issue.record("accepted"); return }
        #expect(e2.message.contains("not earlier in the plan"))
        guard case .failure(let e3) = s.plan(JobStory.twoStagePlan(2), total: 5) else { Issue.record("accepted"); return }
        #expect(e3.message.contains("announced 5 jobs, sent 4"))
        #expect(s.state.jobs.isEmpty)
    }

    @Test("more jobs than max_plan_jobs is refused on the first chunk, with the count")
    func limit() {
        var s = JobStory()
        s.apply(.setSetting(key: "max_plan_jobs", value: "5"))
        guard case .failure(let e) = s.plan(JobStory.twoStagePlan(3)) else { Issue.record("accepted"); return }
        #expect(e.message.contains("makes 6 jobs, more than this mesh's limit of 5"))
        #expect(s.state.sweeps.isEmpty)
    }

    @Test("identical jobs in one plan are created once; cells share them")
    func dedupWithinPlan() throws {
        var s = JobStory()
        var jobs = JobStory.twoStagePlan(2)
        jobs.append(PlannedJob(spec: JobSpec(name: "p0 again", command: ["p", "0"], stage: "pretrain"), identity: "p0", combination: 2))
        let sweep = try s.plan(jobs).get()
        #expect(s.sweep(sweep).cells.count == 5)
        #expect(s.sweep(sweep).created == 4)
        #expect(s.sweep(sweep).cells[4].job == s.sweep(sweep).cells[0].job)
        #expect(s.sweep(sweep).jobIDs.count == 4)
    }

    @Test("a failed dependency fails its dependents with the reason; retrying it brings them back")
    func failurePropagates() throws {
        var s = JobStory()
        let sweep = try s.plan(JobStory.twoStagePlan(3)).get()
        s.runAll { $0 == "p1" ? .exited(3) : .exited(0) }
        #expect(s.cellJob(sweep, "f0").state == .succeeded)
        let p1 = s.cellJob(sweep, "p1")
        let f1 = s.cellJob(sweep, "f1")
        #expect(p1.state == .failed)
        #expect(f1.state == .failed)
        #expect(f1.reason == "dependency \(p1.id) failed")
        #expect(f1.dependencyFailed)
        #expect(f1.attempts.isEmpty)
        // Retrying the dependent alone is refused: its dependency is still failed.
        #expect(s.apply(.retry([f1.id], at: 0)).isDone == false)
        // Retrying the dependency revives it.
        #expect(s.apply(.retry([p1.id], at: 0)).isDone)
        #expect(s.cellJob(sweep, "f1").state == .waiting)
        s.runAll()
        #expect(s.sweep(sweep).jobIDs.allSatisfy { s.job($0).state == .succeeded })
    }

    @Test("re-submitting a plan runs only the cells that have not succeeded; --fresh runs all")
    func resume() throws {
        var s = JobStory()
        let first = try s.plan(JobStory.twoStagePlan(3)).get()
        s.runAll { $0 == "p2" || $0 == "f0" ? .exited(1) : .exited(0) }
        let attemptsBefore = s.state.jobs.values.reduce(0) { $0 + $1.attempts.count }
        #expect(attemptsBefore == 5) // p0 p1 p2 f0 f1; f2 failed with its dependency

        let second = try s.plan(JobStory.twoStagePlan(3)).get()
        #expect(s.sweep(second).created == 0)
        #expect(s.sweep(second).jobIDs == s.sweep(first).jobIDs)
        #expect(s.cellJob(second, "p2").state == .pending)
        #expect(s.cellJob(second, "f2").state == .waiting)
        #expect(s.cellJob(second, "f0").state == .pending)
        #expect(s.cellJob(second, "p0").state == .succeeded)
        s.runAll()
        // Only p2, f0 and f2 ran again.
        #expect(s.state.jobs.values.reduce(0) { $0 + $1.attempts.count } == attemptsBefore + 3)
        #expect(s.sweep(second).jobIDs.allSatisfy { s.job($0).state == .succeeded })

        // Running and waiting cells are shared, not duplicated; --fresh makes new jobs.
        let fresh = try s.plan(JobStory.twoStagePlan(3), reuse: false).get()
        #expect(s.sweep(fresh).created == 6)
        #expect(Set(s.sweep(fresh).jobIDs).isDisjoint(with: s.sweep(first).jobIDs))
        let again = try s.plan(JobStory.twoStagePlan(3)).get()
        #expect(s.sweep(again).jobIDs == s.sweep(fresh).jobIDs)
    }

    @Test("--after and plans share the dependency mechanism; a dependency of a plain submit can fail it")
    func afterUsesTheSameMechanism() throws {
        var s = JobStory()
        let a = try s.submitted(JobSpec(name: "a", command: ["a"]))
        let b = try s.submitted(JobSpec(name: "b", command: ["b"], after: [a]))
        #expect(s.job(b).state == .waiting)
        s.runAll { _ in .exited(2) }
        #expect(s.job(b).state == .failed)
        #expect(s.job(b).reason == "dependency \(a) failed")
    }

    @Test("--resume of a plan none of whose jobs exists is refused; one that shares some runs")
    func resumeNeedsEarlierJobs() throws {
        var s = JobStory()
        let fresh = PlanChunk(total: 4, jobs: JobStory.twoStagePlan(2), final: true, resume: true)
        let refused = s.apply(.plan(fresh))
        #expect(!refused.isDone)
        #expect(refused.message.contains("none of its 4 jobs has been submitted before"))
        #expect(s.state.jobs.isEmpty)
        _ = try s.plan(JobStory.twoStagePlan(1)).get()
        #expect(s.apply(.plan(fresh)).isDone)
        #expect(s.state.jobs.count == 4)
    }

    @Test("Raft sends a follower that is behind at most about maxBytesPerAppend of large entries per append")
    func appendBytes() {
        var settings = Consensus.Settings()
        settings.maxBytesPerAppend = 20_000
        var r = RaftStory(voters: ["a", "b", "c"], settings: settings)
        r.fire("a")
        r.deliverAll()
        r.isolate("c")
        let chunk = PlanChunk(jobs: (0..<10).map { PlannedJob(spec: JobSpec(command: ["sh", "-c", String(repeating: "x", count: 900)]), identity: "\($0)") })
        let size = ClusterState.Command.plan(chunk).approximateSize
        #expect(size > 9000 && size < 20_000)
        for i in 0..<12 {
            let request = ClusterState.Request(client: .init(9), sequence: UInt64(i + 1), command: .plan(chunk))
            guard case .success(let (_, d)) = r.nodes["a"]!.propose(request, now: r.now) else { Issue.record("not proposed"); return }
            r.carryOut("a", d)
            r.deliverAll()
        }
        r.heal()
        // c catches up: no append to it carries more than two of these entries (about 2 × size).
        var largest = 0
        for _ in 0..<300 {
            r.tick(.milliseconds(10))
            while !r.queue.isEmpty {
                let p = r.queue.removeFirst()
                if p.to == r.id("c"), case .append(_, _, let entries, _) = p.message { largest = max(largest, entries.count) }
                r.deliver(p)
            }
        }
        #expect(largest >= 1 && largest <= 2, "largest append to c: \(largest) entries")
        #expect(r.node("c").commitIndex == r.node("a").commitIndex)
    }
}
